"""Row ids past 2**31 on every backend.

Some tables use up ids fast: the live registry's snapshot deletes and inserts a
session at each change, offline messages and the audit log only grow, and each
ANONYMOUS login makes an account.  SQLite's rowid is 64-bit; PostgreSQL's
INTEGER is 32-bit, so migration 0010 makes every id (and every reference to an
account) BIGINT there.  Each test moves the table's sequence past 2**31 and
writes on (PostgreSQL only: SQLite has no such limit to test).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from chatgate.auth.credentials import ScramKeys
from chatgate.storage.database import Database
from chatgate.storage.records import RosterItem
from chatgate.storage.repositories.offline import OfflineQuota, Stored
from chatgate.storage.repositories.streams import LiveSessionRow

from .conftest import ALICE, rows

pytestmark = pytest.mark.postgresql_only

PAST_INT32 = 2**31 + 10
QUOTA = OfflineQuota(messages=10, bytes=10_000, sender_messages=10, sender_bytes=10_000)


async def _bump(db: Database, table: str) -> None:
    """Make the next id `table` hands out greater than 2**31."""
    async with db.engine.begin() as conn:
        await conn.execute(
            text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v)"),
            {"t": table, "v": PAST_INT32},
        )


async def test_an_account_past_int32_owns_its_data(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await _bump(db, "accounts")
    await db.accounts.create(*ALICE, keys)
    [(account_id,)] = await rows(db, "SELECT id FROM accounts")
    assert account_id > 2**31
    await db.roster.put(ALICE, RosterItem("bob@example.org"))
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    assert await db.offline.store(ALICE, "bob@x", "<message/>", stamp, QUOTA) is Stored.STORED
    await db.vcards.put(ALICE, "<vCard xmlns='vcard-temp'/>")
    assert [i.jid for i in await db.roster.items(ALICE)] == ["bob@example.org"]
    assert await db.offline.count(ALICE) == 1
    assert await db.accounts.delete(*ALICE)
    assert await rows(db, "SELECT count(*) FROM roster_items") == [(0,)]


async def test_offline_messages_past_int32(db: Database, alice: tuple[str, str]) -> None:
    await _bump(db, "offline_messages")
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    assert await db.offline.store(alice, "bob@x", "<message/>", stamp, QUOTA) is Stored.STORED
    [held] = await db.offline.batch(alice, after=0, max_messages=10, max_bytes=10_000)
    assert held.id > 2**31
    assert await db.offline.delete(alice, [held.id]) == 1


async def test_live_sessions_past_int32(db: Database) -> None:
    await _bump(db, "live_sessions")
    row = LiveSessionRow("publish", "live/a", "alice@localhost", "1", "n", None, 1.0, 2.0, True)
    await db.live_sessions.replace([row])
    await db.live_sessions.change([row.key], [row._replace(last_seen=3.0)])
    assert await db.live_sessions.load() == [row._replace(last_seen=3.0)]
    [(session_id,)] = await rows(db, "SELECT id FROM live_sessions")
    assert session_id > 2**31
