"""Rules stored at run time: order, duplicates, removal, the change signal, and
two "processes" on one database."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatgate.storage.database import Database
from chatgate.streams.rule_store import MAX_RULE_LENGTH, DatabaseRuleStore, LocalRuleStore
from chatgate.streams.rulebook import RuleBook
from chatgate.streams.signal import LocalSignal, StampSignal
from chatgate.streams.stores import RuleStore

PUBLISH = "publish live/* authenticated"
PLAY = "play live/* anonymous"


@pytest.fixture(params=["memory", "database"])
def signal_and_store(request: pytest.FixtureRequest, db: Database) -> tuple[LocalSignal, RuleStore]:
    signal = LocalSignal()
    if request.param == "memory":
        return signal, LocalRuleStore(signal.watcher())
    return signal, DatabaseRuleStore(db.stream_rules, signal.watcher())


async def test_rules_are_kept_in_order_without_duplicates(
    signal_and_store: tuple[LocalSignal, RuleStore],
) -> None:
    signal, rules = signal_and_store
    assert await rules.rules() == []
    assert await rules.add(PUBLISH)
    assert await rules.add(PLAY)
    assert signal.changed()
    assert not await rules.add(PUBLISH)
    assert not signal.changed()  # nothing changed: nothing raised
    assert await rules.rules() == [PUBLISH, PLAY]
    assert await rules.remove(PUBLISH)
    assert signal.changed()
    assert not await rules.remove(PUBLISH)
    assert not signal.changed()
    assert await rules.rules() == [PLAY]
    assert await rules.add(PUBLISH)  # added again: now last
    assert await rules.rules() == [PLAY, PUBLISH]


@pytest.mark.parametrize("bad", ["", "x" * (MAX_RULE_LENGTH + 1), "publish\nlive/* anyone"])
async def test_what_cannot_be_stored_is_refused(
    signal_and_store: tuple[LocalSignal, RuleStore], bad: str
) -> None:
    _, rules = signal_and_store
    with pytest.raises(ValueError):
        await rules.add(bad)
    assert await rules.rules() == []
    assert not await rules.remove(bad)


async def test_a_rule_added_by_the_cli_reaches_the_servers_rule_book(
    db_url: str, tmp_path: Path
) -> None:
    now = [10.0]
    server_db, cli_db = await Database.open(db_url), await Database.open(db_url)
    try:
        server_signal = StampSignal(tmp_path, clock=lambda: now[0])
        book = RuleBook([], DatabaseRuleStore(server_db.stream_rules, LocalSignal()), server_signal)
        assert len(await book.current()) == 0
        cli = DatabaseRuleStore(cli_db.stream_rules, StampSignal(tmp_path))
        assert await cli.add(PUBLISH)
        assert len(await book.current()) == 0  # within the stamp's check interval
        now[0] += 0.06
        assert len(await book.current()) == 1
        assert await cli.remove(PUBLISH)
        now[0] += 0.06
        assert len(await book.current()) == 0
    finally:
        await server_db.close()
        await cli_db.close()
