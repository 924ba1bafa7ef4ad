"""OfflineRepository: quotas by count and stored bytes, per recipient and per
sender, hold under concurrency; delivery reads bounded batches and deletes only
the ids it is given."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import Connection, bindparam, text

from chatgate.auth.credentials import ScramKeys
from chatgate.storage.database import Database
from chatgate.storage.engine import create_engine, writer
from chatgate.storage.errors import AccountNotFound
from chatgate.storage.migrate import alembic_config
from chatgate.storage.models import UTCDateTime
from chatgate.storage.repositories.offline import OfflineQuota, Stored

from .conftest import BOB

T0 = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
ROOMY = OfflineQuota(messages=1000, bytes=10**8, sender_messages=1000, sender_bytes=10**8)
MALLORY = "mallory@localhost"


def quota(**kw: int) -> OfflineQuota:
    fields = {
        "messages": 1000,
        "bytes": 10**8,
        "sender_messages": 1000,
        "sender_bytes": 10**8,
        **kw,
    }
    return OfflineQuota(**fields)


async def test_store_refuses_past_the_count(db: Database, alice: tuple[str, str]) -> None:
    q = quota(messages=2)
    assert await db.offline.store(alice, "a@x", "<message>1</message>", T0, q) is Stored.STORED
    assert await db.offline.store(alice, "b@x", "<message>2</message>", T0, q) is Stored.STORED
    assert await db.offline.store(alice, "c@x", "<message>3</message>", T0, q) is Stored.FULL
    assert await db.offline.count(alice) == 2


async def test_store_counts_utf8_bytes_of_what_it_stores(
    db: Database, alice: tuple[str, str]
) -> None:
    stanza = "<message>" + "é" * 10 + "</message>"  # 29 characters, 39 bytes
    assert await db.offline.store(alice, MALLORY, stanza, T0, quota(bytes=39)) is Stored.STORED
    assert await db.offline.usage(alice) == (1, 39)
    assert await db.offline.store(alice, "b@x", "<m/>", T0, quota(bytes=42)) is Stored.FULL
    assert await db.offline.store(alice, "b@x", "<m/>", T0, quota(bytes=43)) is Stored.STORED
    assert await db.offline.usage(alice) == (2, 43)


async def test_sender_share_by_bytes_and_count_leaves_room_for_others(
    db: Database, alice: tuple[str, str]
) -> None:
    body = "<message>" + "x" * 92 + "</message>"  # 111 bytes
    q = quota(bytes=1000, sender_bytes=300, sender_messages=5)
    results = [await db.offline.store(alice, MALLORY, body, T0, q) for _ in range(3)]
    assert results == [Stored.STORED, Stored.STORED, Stored.SENDER_FULL]
    assert await db.offline.store(alice, "carol@x", body, T0, q) is Stored.STORED
    small = quota(sender_messages=2)
    assert await db.offline.store(alice, MALLORY, "<m/>", T0, small) is Stored.SENDER_FULL
    assert await db.offline.store(alice, "dave@x", "<m/>", T0, small) is Stored.STORED


async def test_quotas_are_per_recipient(
    db: Database, alice: tuple[str, str], keys: dict[str, ScramKeys]
) -> None:
    await db.accounts.create(*BOB, keys)
    q = quota(messages=1)
    assert await db.offline.store(alice, MALLORY, "<m/>", T0, q) is Stored.STORED
    assert await db.offline.store(BOB, MALLORY, "<m/>", T0, q) is Stored.STORED


async def test_limits_hold_for_concurrent_stores(db: Database, alice: tuple[str, str]) -> None:
    q = quota(messages=5)
    results = await asyncio.gather(
        *(
            db.offline.store(alice, f"s{i}@x", f"<message>{i:02}</message>", T0, q)
            for i in range(30)
        )
    )
    assert results.count(Stored.STORED) == 5
    assert await db.offline.usage(alice) == (5, 5 * 21)
    body = "<message>" + "y" * 82 + "</message>"  # 101 bytes
    # Room for one by the recipient's bytes, four by the sender's share.
    q = quota(bytes=5 * 21 + 101 + 50, sender_bytes=404)
    results = await asyncio.gather(
        *(db.offline.store(alice, MALLORY, body, T0, q) for _ in range(9))
    )
    assert results.count(Stored.STORED) == 1
    assert await db.offline.usage(alice) == (6, 5 * 21 + 101)


async def test_limit_holds_across_engines_on_one_file(
    db: Database, db_url: str, alice: tuple[str, str]
) -> None:
    # Two engines on one file behave like two processes (server and CLI).
    other = await Database.open(db_url)
    try:
        results = await asyncio.gather(
            *(
                (db if i % 2 else other).offline.store(
                    alice, MALLORY, f"<m>{i:02}</m>", T0, quota(sender_bytes=7 * 9)
                )
                for i in range(24)
            )
        )
    finally:
        await other.close()
    assert results.count(Stored.STORED) == 7
    assert await db.offline.usage(alice) == (7, 63)


async def test_batches_are_oldest_first_and_bounded(db: Database, alice: tuple[str, str]) -> None:
    sizes = [50, 50, 50, 400, 10, 10]
    for i, size in enumerate(sizes):
        body = f"<m>{i}" + "z" * (size - 8) + "</m>"
        assert len(body) == size
        await db.offline.store(alice, MALLORY, body, T0 + timedelta(seconds=i), ROOMY)
    first = await db.offline.batch(alice, after=0, max_messages=10, max_bytes=120)
    assert [m.stanza[:4] for m in first] == ["<m>0", "<m>1"]
    assert first[0].stamp == T0 and first[0].stamp.tzinfo is UTC
    second = await db.offline.batch(alice, after=first[-1].id, max_messages=10, max_bytes=120)
    assert [m.stanza[:4] for m in second] == ["<m>2"]
    # One message over the byte bound still comes alone, so delivery never stalls.
    third = await db.offline.batch(alice, after=second[-1].id, max_messages=10, max_bytes=120)
    assert [m.stanza[:4] for m in third] == ["<m>3"]
    fourth = await db.offline.batch(alice, after=third[-1].id, max_messages=1, max_bytes=120)
    assert [m.stanza[:4] for m in fourth] == ["<m>4"]
    # Reading deletes nothing.
    assert await db.offline.count(alice) == 6


async def test_delete_removes_only_the_given_ids_of_that_owner(
    db: Database, alice: tuple[str, str], keys: dict[str, ScramKeys]
) -> None:
    await db.accounts.create(*BOB, keys)
    for i in range(3):
        await db.offline.store(alice, MALLORY, f"<m>{i}</m>", T0, ROOMY)
    await db.offline.store(BOB, MALLORY, "<m>bob</m>", T0, ROOMY)
    held = await db.offline.batch(alice, after=0, max_messages=10, max_bytes=10**6)
    (bobs,) = await db.offline.batch(BOB, after=0, max_messages=10, max_bytes=10**6)
    assert await db.offline.delete(alice, [held[0].id, held[2].id, bobs.id]) == 2
    left = await db.offline.batch(alice, after=0, max_messages=10, max_bytes=10**6)
    assert [m.stanza for m in left] == ["<m>1</m>"]
    assert await db.offline.count(BOB) == 1
    assert await db.offline.delete(alice, [held[0].id]) == 0
    assert await db.offline.delete(alice, []) == 0


async def test_store_for_unknown_account_raises(db: Database) -> None:
    with pytest.raises(AccountNotFound):
        await db.offline.store(BOB, MALLORY, "<message/>", T0, ROOMY)
    assert await db.offline.batch(BOB, after=0, max_messages=10, max_bytes=100) == []
    assert await db.offline.delete(BOB, [1]) == 0


async def test_naive_stamp_is_refused(db: Database, alice: tuple[str, str]) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        await db.offline.store(alice, MALLORY, "<message/>", datetime(2024, 1, 1), ROOMY)


async def test_migration_0005_sizes_the_messages_stored_before_it(empty_db_url: str) -> None:
    db_url = empty_db_url
    stanza = "<message><body>\u00e9&gt;</body></message>"  # 37 characters, 38 bytes

    def before_0005(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
        stamp = bindparam("t", type_=UTCDateTime())
        conn.execute(
            text("INSERT INTO accounts (username, domain, created) VALUES (:u, :d, :t)").bindparams(
                stamp
            ),
            {"u": "alice", "d": "localhost", "t": T0},
        )
        conn.execute(
            text(
                "INSERT INTO offline_messages (account_id, stanza, stamp) VALUES (1, :s, :t)"
            ).bindparams(stamp),
            [{"s": stanza, "t": T0}] * 2,
        )

    engine = create_engine(db_url)
    try:
        async with writer(engine).begin() as conn:
            await conn.run_sync(before_0005)
    finally:
        await engine.dispose()
    db = await Database.open(db_url)
    try:
        alice = ("alice", "localhost")
        assert await db.offline.usage(alice) == (2, 2 * 38)
        # Stored before senders were recorded: counted for the recipient, for no sender.
        q = quota(bytes=3 * 38, sender_bytes=38)
        assert await db.offline.store(alice, MALLORY, stanza, T0, q) is Stored.STORED
        assert await db.offline.store(alice, "carol@x", stanza, T0, q) is Stored.FULL
        held = await db.offline.batch(alice, after=0, max_messages=10, max_bytes=10**6)
        assert [m.stanza for m in held] == [stanza] * 3
    finally:
        await db.close()

    def downgrade(conn: Connection) -> list[tuple[str, int]]:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
        return conn.execute(text("SELECT stanza, account_id FROM offline_messages")).all()

    engine = create_engine(db_url)
    try:
        async with writer(engine).begin() as conn:
            rows = await conn.run_sync(downgrade)
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [(stanza, 1)] * 3
