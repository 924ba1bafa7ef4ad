"""The archive's write queue: bounded in rows and bytes, one warning per full
episode, a flush that waits only for what was queued before it, and a database
failure that costs the batch, not the writer."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime

import pytest

from chatgate.auth.credentials import derive_all
from chatgate.modules.mam import writer as writer_module
from chatgate.modules.mam.ids import IdGenerator, millis
from chatgate.modules.mam.writer import ArchiveWriter, QueuedRow
from chatgate.storage.database import Database
from chatgate.storage.repositories.archive import ArchiveRepository, NewArchiveRow

_ids = IdGenerator(os.urandom)


def row(body: str = "x") -> NewArchiveRow:
    now = datetime.now(UTC)
    return NewArchiveRow(
        "alice@localhost",
        ("alice", "localhost"),
        _ids.next(millis(now)),
        "bob@localhost",
        "",
        now,
        f"<message><body>{body}</body></message>",
    )


async def keep_all(rows: Sequence[QueuedRow]) -> list[NewArchiveRow]:
    return [q.row for q in rows]


class Tasks:
    def __init__(self) -> None:
        self.running: set[asyncio.Future[None]] = set()

    def spawn(self, work: Awaitable[None]) -> None:
        self.running.add(asyncio.ensure_future(work))

    async def wait(self) -> None:
        while self.running:
            done, _ = await asyncio.wait(self.running)
            self.running -= done


@pytest.fixture
async def repository(db: Database) -> ArchiveRepository:
    await db.accounts.create("alice", "localhost", derive_all("pw"))
    return ArchiveRepository(db.engine)


async def test_full_queue_refuses_and_warns_once_per_episode(
    repository: ArchiveRepository, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = Tasks()
    writer = ArchiveWriter(repository, keep_all, tasks.spawn, max_rows=2, max_bytes=10**6, batch=10)
    with caplog.at_level(logging.WARNING, writer_module.__name__):
        assert [writer.offer(row(), "bob@localhost") for _ in range(5)] == [
            True,
            True,
            False,
            False,
            False,
        ]
        await tasks.wait()
        assert writer.offer(row(), "bob@localhost")  # room again
        await tasks.wait()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("queue full" in m for m in messages) == 1
    assert any("room again; 3 messages were not archived" in m for m in messages)
    assert await repository.count("alice@localhost") == 3 and writer.refused_total == 3


async def test_bytes_bound_the_queue_too(repository: ArchiveRepository) -> None:
    tasks = Tasks()
    writer = ArchiveWriter(repository, keep_all, tasks.spawn, max_rows=100, max_bytes=100, batch=10)
    assert writer.offer(row("a" * 40), None)
    assert not writer.offer(row("b" * 40), None)
    await tasks.wait()
    assert writer.nbytes == 0


async def test_flush_waits_only_for_what_was_queued_before(repository: ArchiveRepository) -> None:
    tasks = Tasks()
    writer = ArchiveWriter(
        repository, keep_all, tasks.spawn, max_rows=100, max_bytes=10**6, batch=1
    )
    writer.offer(row(), None)
    flushing = asyncio.ensure_future(writer.flush())
    await asyncio.sleep(0)
    for _ in range(20):
        writer.offer(row(), None)
    await flushing
    assert 1 <= writer.written_total < 21
    await tasks.wait()
    assert writer.written_total == 21
    await writer.flush()  # nothing queued: returns at once


async def test_a_refused_batch_is_retried_then_dropped(
    repository: ArchiveRepository, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(writer_module, "RETRY_PAUSES", (0.0, 0.0))
    calls = 0

    async def failing(rows: Sequence[QueuedRow]) -> list[NewArchiveRow]:
        nonlocal calls
        calls += 1
        raise RuntimeError("database gone")

    tasks = Tasks()
    writer = ArchiveWriter(repository, failing, tasks.spawn, max_rows=10, max_bytes=10**6, batch=10)
    with caplog.at_level(logging.WARNING, writer_module.__name__):
        writer.offer(row(), None)
        await tasks.wait()
    assert calls == 3
    assert any("dropped" in r.getMessage() for r in caplog.records)
    writer._screen = keep_all  # the database is back: the next row is written
    writer.offer(row(), None)
    await tasks.wait()
    assert await repository.count("alice@localhost") == 1


async def test_an_unreachable_database_is_one_line_per_outage_not_one_per_batch(
    repository: ArchiveRepository, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from chatgate.storage.errors import StorageUnavailable

    monkeypatch.setattr(writer_module, "RETRY_PAUSES", (0.0, 0.0))

    async def unreachable(rows: Sequence[QueuedRow]) -> list[NewArchiveRow]:
        raise StorageUnavailable("the database is unreachable")

    tasks = Tasks()
    writer = ArchiveWriter(
        repository, unreachable, tasks.spawn, max_rows=100, max_bytes=10**6, batch=2
    )
    with caplog.at_level(logging.WARNING, writer_module.__name__):
        for _ in range(10):  # five batches, each tried three times, each dropped
            writer.offer(row(), None)
        await tasks.wait()
    lines = [r for r in caplog.records if r.name == writer_module.__name__]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "unreachable" in lines[0].getMessage() and lines[0].exc_info is None
    assert writer.written_total == 0 and len(writer) == 0
