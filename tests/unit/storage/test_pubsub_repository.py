"""PubsubRepository on SQLite and PostgreSQL: nodes per account bounded, items
trimmed to max_items newest first, a republished id becomes the newest, a
configuration changed under a publish is noticed, all gone with the account."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chatgate.storage.database import Database
from chatgate.storage.repositories.pubsub import (
    ConfigChanged,
    NodeExists,
    NodeNotFound,
    PubsubRepository,
    StoredItem,
    TooManyNodes,
)

from .conftest import rows


def item(item_id: str) -> StoredItem:
    return StoredItem(
        item_id, "alice@localhost/r", f"<v xmlns='x'>{item_id}</v>", datetime.now(UTC)
    )


async def publish(
    repo: PubsubRepository, owner: tuple[str, str], node: str, item_id: str, max_items: int = 3
) -> None:
    await repo.publish(
        owner,
        node,
        item(item_id),
        create_config="{}",
        expected_config=None,
        max_items=max_items,
        max_nodes=10,
    )


async def test_items_are_trimmed_and_ordered(db: Database, alice: tuple[str, str]) -> None:
    repo = PubsubRepository(db.engine)
    for n in range(5):
        await publish(repo, alice, "n", f"i{n}")
    assert [i.item_id for i in await repo.items(alice, "n")] == ["i2", "i3", "i4"]
    assert [i.item_id for i in await repo.items(alice, "n", last=1)] == ["i4"]
    assert [i.item_id for i in await repo.items(alice, "n", ids=["i3", "zz"])] == ["i3"]
    await publish(repo, alice, "n", "i2")
    assert [i.item_id for i in await repo.items(alice, "n")] == ["i3", "i4", "i2"]
    assert (await repo.items(alice, "n", last=1))[0].xml == "<v xmlns='x'>i2</v>"
    assert await repo.retract(alice, "n", "i3") is True
    assert await repo.retract(alice, "n", "i3") is False
    with pytest.raises(NodeNotFound):
        await repo.items(alice, "none")


async def test_node_limits_and_lifecycle(db: Database, alice: tuple[str, str]) -> None:
    repo = PubsubRepository(db.engine)
    await repo.create(alice, "a", '{"x": 1}', max_nodes=2)
    with pytest.raises(NodeExists):
        await repo.create(alice, "a", "{}", max_nodes=2)
    await repo.create(alice, "b", "{}", max_nodes=2)
    with pytest.raises(TooManyNodes):
        await repo.create(alice, "c", "{}", max_nodes=2)
    with pytest.raises(TooManyNodes):
        await repo.publish(
            alice,
            "c",
            item("1"),
            create_config="{}",
            expected_config=None,
            max_items=1,
            max_nodes=2,
        )
    assert [n.node for n in await repo.nodes(alice)] == ["a", "b"]
    assert (await repo.node(alice, "a")).config == '{"x": 1}'  # type: ignore[union-attr]
    await publish(repo, alice, "a", "1")
    await publish(repo, alice, "a", "2")
    await repo.configure(alice, "a", '{"x": 2}', max_items=1)
    assert [i.item_id for i in await repo.items(alice, "a")] == ["2"]
    await repo.purge(alice, "a")
    assert await repo.items(alice, "a") == []
    await repo.delete(alice, "a")
    assert await repo.node(alice, "a") is None
    with pytest.raises(NodeNotFound):
        await repo.delete(alice, "a")


async def test_a_configuration_changed_meanwhile_is_noticed(
    db: Database, alice: tuple[str, str]
) -> None:
    repo = PubsubRepository(db.engine)
    await repo.create(alice, "a", '{"v": 1}', max_nodes=5)
    await repo.configure(alice, "a", '{"v": 2}', max_items=5)
    with pytest.raises(ConfigChanged):
        await repo.publish(
            alice,
            "a",
            item("1"),
            create_config="{}",
            expected_config='{"v": 1}',
            max_items=5,
            max_nodes=5,
        )
    assert await repo.items(alice, "a") == []


async def test_not_persisted_items_are_not_stored(db: Database, alice: tuple[str, str]) -> None:
    repo = PubsubRepository(db.engine)
    await repo.publish(
        alice,
        "t",
        item("1"),
        create_config="{}",
        expected_config=None,
        max_items=5,
        max_nodes=5,
        store=False,
    )
    assert await repo.node(alice, "t") is not None
    assert await repo.items(alice, "t") == []


async def test_everything_goes_with_the_account(db: Database, alice: tuple[str, str]) -> None:
    repo = PubsubRepository(db.engine)
    await publish(repo, alice, "a", "1")
    await db.accounts.delete(*alice)
    assert await rows(db, "SELECT id FROM pubsub_nodes") == []
    assert await rows(db, "SELECT id FROM pubsub_items") == []


async def test_nodes_named_across_owners(db: Database, alice: tuple[str, str], keys) -> None:  # type: ignore[no-untyped-def]
    bob = ("bob", "localhost")
    await db.accounts.create(*bob, keys)
    repo = PubsubRepository(db.engine)
    await publish(repo, alice, "mood", "1")
    await publish(repo, alice, "tune", "1")
    await publish(repo, bob, "mood", "1")
    await publish(repo, bob, "other", "1")
    found = await repo.nodes_named([alice, bob], ["mood", "tune", "absent"])
    assert [(owner, n.node) for owner, n in found] == [
        (alice, "mood"),
        (alice, "tune"),
        (bob, "mood"),
    ]
    assert await repo.nodes_named([bob], ["tune"]) == []
    assert await repo.nodes_named([], ["mood"]) == []
