"""`OutageLog`: one WARNING line without a traceback per place, then at most one per
interval, counting what it did not write; `Hooks` handlers failing because the
database is out of reach are logged through it, other failures with their
traceback as before."""

from __future__ import annotations

import logging

import pytest

import chatgate.hooks
from chatgate.hooks import Hooks
from chatgate.storage.errors import StorageUnavailable
from chatgate.storage.outage_log import OutageLog

LOG = logging.getLogger("chatgate.test.outage")


def unreachable() -> StorageUnavailable:
    try:
        raise StorageUnavailable("the database is unreachable") from ConnectionRefusedError(
            111, "Connect call failed"
        )
    except StorageUnavailable as exc:
        return exc


def test_one_line_per_interval_with_the_count_of_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    outage = OutageLog(LOG, "stanza handling", interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        assert outage.failed("a <message/>", unreachable())
        for step in (1.0, 5.0, 9.9):
            now[0] = 100.0 + step
            assert not outage.failed("a <message/>", unreachable())
        now[0] = 110.0
        assert outage.failed("a <presence/>", unreachable())
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "stanza handling: a <message/> failed: the database is unreachable"
        " (ConnectionRefusedError: [Errno 111] Connect call failed)",
        "stanza handling: a <presence/> failed: the database is unreachable"
        " (ConnectionRefusedError: [Errno 111] Connect call failed);"
        " 3 more such failures since the last line",
    ]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)


async def test_hook_handlers_out_of_the_database_log_one_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chatgate.hooks, "_OUTAGE", OutageLog(chatgate.hooks.log, "event handlers"))

    class Event:
        pass

    ran: list[str] = []

    async def stores(event: Event) -> None:
        raise unreachable()

    def sync_stores(event: Event) -> None:
        raise unreachable()

    def after(event: Event) -> None:
        ran.append("after")

    hooks = Hooks()
    hooks.add(Event, stores, priority=20)
    hooks.add(Event, sync_stores, priority=10)
    hooks.add(Event, after)
    with caplog.at_level(logging.WARNING, logger="chatgate.hooks"):
        for _ in range(3):
            await hooks.notify(Event())
            pending = hooks.fire(Event())
            assert pending is not None
            await pending
    assert ran == ["after"] * 6  # the others still run
    assert len(caplog.records) == 1
    assert "database is unreachable" in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is None


async def test_other_hook_failures_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    class Event:
        pass

    def broken(event: Event) -> None:
        raise ValueError("a bug")

    hooks = Hooks()
    hooks.add(Event, broken)
    with caplog.at_level(logging.WARNING, logger="chatgate.hooks"):
        await hooks.notify(Event())
        assert hooks.fire(Event()) is None
    assert len(caplog.records) == 2
    for record in caplog.records:
        assert record.levelno == logging.ERROR and record.exc_info is not None
        assert record.exc_info[0] is ValueError
