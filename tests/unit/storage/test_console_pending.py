"""`admin_console_sessions.pending` (migration 0011), on SQLite and PostgreSQL: set
and taken only when it is still what the caller read, so two requests of one login
cannot both take what waits for its next page."""

from __future__ import annotations

from chatgate.storage.database import Database
from chatgate.storage.repositories.admin import ConsoleSessionRow

ROW = ConsoleSessionRow("h" * 64, "ops", ("admin",), "basic", "csrf", 100, 100)


async def test_pending_is_replaced_only_when_still_as_read(db: Database) -> None:
    sessions = db.console_sessions
    await sessions.add(ROW)
    assert (await sessions.get(ROW.id_hash)) == ROW  # nothing pending at first
    assert await sessions.replace_pending(ROW.id_hash, None, "sealed-1")
    assert not await sessions.replace_pending(ROW.id_hash, None, "sealed-2")  # changed since
    row = await sessions.get(ROW.id_hash)
    assert row is not None and row.pending == "sealed-1"
    assert await sessions.replace_pending(ROW.id_hash, "sealed-1", None)  # taken
    assert not await sessions.replace_pending(ROW.id_hash, "sealed-1", None)  # once
    row = await sessions.get(ROW.id_hash)
    assert row is not None and row.pending is None
    assert not await sessions.replace_pending("x" * 64, None, "sealed")  # no such session
