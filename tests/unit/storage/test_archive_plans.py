"""The archive's page queries are served by its indexes, in index order, on SQLite
and PostgreSQL: what keeps a page of 50 as cheap deep in a 100,000-message archive
as at its start (docs/mam.md has the measured times).  The statements checked are
the ones `ArchiveRepository.query` really runs, captured as they go to the driver,
then EXPLAINed with the same parameters: no sort step, and the (owner, archive_id)
or (owner, peer, archive_id) index named."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from chatgate.auth.credentials import ScramKeys
from chatgate.modules.mam.ids import IdGenerator, millis
from chatgate.storage.database import Database
from chatgate.storage.repositories.archive import (
    ArchiveFilter,
    ArchiveRepository,
    NewArchiveRow,
    PageRequest,
)

from .conftest import ALICE, BOB

T0 = datetime(2025, 1, 1, tzinfo=UTC)
#: the unique (owner, archive_id) constraint's index, by its name on each backend
#: (SQLite names the index of a UNIQUE constraint itself)
PAGE_INDEX = ("uq_archive_messages_owner_archive_id", "sqlite_autoindex_archive_messages_1")
PEER_INDEX = ("ix_archive_messages_owner_peer",)


@pytest.fixture
async def filled(db: Database, keys: dict[str, ScramKeys]) -> tuple[ArchiveRepository, list[str]]:
    await db.accounts.create(*ALICE, keys)
    await db.accounts.create(*BOB, keys)
    repo = ArchiveRepository(db.engine)
    ids = IdGenerator(os.urandom)
    rows = []
    for i in range(3000):
        stamp = T0 + timedelta(seconds=i)
        owner = ALICE if i % 3 else BOB
        rows.append(
            NewArchiveRow(
                f"{owner[0]}@{owner[1]}",
                owner,
                ids.next(millis(stamp)),
                "carol@localhost" if i % 5 == 0 else "dave@localhost",
                "r",
                stamp,
                "<message/>",
            )
        )
    await repo.append(rows)
    mine = [r.archive_id for r in rows if r.owner == "alice@localhost"]
    return repo, mine


async def _captured(db: Database, work: Any) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "ORDER BY" in statement:
            seen.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", capture)
    try:
        await work
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", capture)
    return seen


async def _plan(db: Database, statement: str, parameters: Any) -> str:
    async with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # a small table would be scanned whole: ask what the indexes allow
            await conn.exec_driver_sql("SET enable_seqscan = off")
            await conn.exec_driver_sql("SET enable_bitmapscan = off")
            result = await conn.exec_driver_sql("EXPLAIN " + statement, parameters)
            plan = "\n".join(str(row[0]) for row in result.all())
            await conn.exec_driver_sql("RESET ALL")
            return plan
        result = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        return "\n".join(str(row[-1]) for row in result.all())


@pytest.mark.parametrize(
    ("case", "index"),
    [
        ("first", PAGE_INDEX),
        ("last", PAGE_INDEX),
        ("after", PAGE_INDEX),
        ("before", PAGE_INDEX),
        ("start-end", PAGE_INDEX),
        ("with-last", PEER_INDEX),
    ],
)
async def test_page_queries_use_the_index_without_sorting(
    db: Database, filled: tuple[ArchiveRepository, list[str]], case: str, index: tuple[str, ...]
) -> None:
    repo, mine = filled
    middle = mine[len(mine) // 2]
    filters, page = {
        "first": (ArchiveFilter(), PageRequest(50)),
        "last": (ArchiveFilter(), PageRequest(50, before="")),
        "after": (ArchiveFilter(), PageRequest(50, after=middle)),
        "before": (ArchiveFilter(), PageRequest(50, before=middle)),
        "start-end": (ArchiveFilter(min_id=mine[10], max_id=mine[900]), PageRequest(50)),
        "with-last": (ArchiveFilter(peer="carol@localhost"), PageRequest(50, before="")),
    }[case]
    statements = await _captured(db, repo.query("alice@localhost", filters, page))
    assert len(statements) == 1
    plan = await _plan(db, *statements[0])
    assert any(name in plan for name in index), plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
    assert "Seq Scan" not in plan and "SCAN archive_messages" not in plan, plan
