"""The stream authority's tables (migration 0006) through `repositories/streams.py`,
on a real SQLite file and a real PostgreSQL database: uniqueness, the cascade from accounts, atomic claims,
and the snapshot's replace/change."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from chatgate.storage.database import Database
from chatgate.storage.errors import AccountNotFound
from chatgate.storage.migrate import alembic_config, head_revision
from chatgate.storage.repositories.streams import LiveSessionRow, StreamKeyTaken

from .conftest import rows

ALICE = ("alice", "localhost")
BOB = ("bob", "localhost")
DIGEST_A = b"\x01" * 32
DIGEST_B = b"\x02" * 32


async def _accounts(db: Database) -> None:
    await db.accounts.create(*ALICE, {})
    await db.accounts.create(*BOB, {})


async def test_a_key_is_found_by_its_digest(db: Database) -> None:
    await _accounts(db)
    assert await db.stream_keys.put(ALICE, DIGEST_A, "0101", b"sealed-a") is None
    assert await db.stream_keys.owner_of(DIGEST_A) == ("alice", "localhost", "0101")
    assert await db.stream_keys.owner_of(DIGEST_B) is None
    assert await db.stream_keys.sealed_of(ALICE) == b"sealed-a"
    assert await db.stream_keys.sealed_of(BOB) is None


async def test_a_new_key_replaces_the_old_one(db: Database) -> None:
    await _accounts(db)
    await db.stream_keys.put(ALICE, DIGEST_A, "0101", b"a")
    assert await db.stream_keys.put(ALICE, DIGEST_B, "0202", b"b") == "0101"
    assert await db.stream_keys.owner_of(DIGEST_A) is None
    assert await db.stream_keys.owner_of(DIGEST_B) == ("alice", "localhost", "0202")
    assert [r.key_id for r in await db.stream_keys.listing()] == ["0202"]


async def test_one_digest_belongs_to_one_account(db: Database) -> None:
    await _accounts(db)
    await db.stream_keys.put(ALICE, DIGEST_A, "0101", b"a")
    await db.stream_keys.put(BOB, DIGEST_B, "0202", b"b")
    with pytest.raises(StreamKeyTaken):
        await db.stream_keys.put(BOB, DIGEST_A, "0101", b"a")
    # nothing changed: bob keeps his key (the transaction rolled back)
    assert await db.stream_keys.owner_of(DIGEST_B) == ("bob", "localhost", "0202")
    assert await db.stream_keys.owner_of(DIGEST_A) == ("alice", "localhost", "0101")


async def test_a_key_needs_an_account(db: Database) -> None:
    with pytest.raises(AccountNotFound):
        await db.stream_keys.put(ALICE, DIGEST_A, "0101", b"a")
    assert await db.stream_keys.revoke(ALICE) is None


async def test_revoke_returns_the_removed_key_id(db: Database) -> None:
    await _accounts(db)
    await db.stream_keys.put(ALICE, DIGEST_A, "0101", b"a")
    assert await db.stream_keys.revoke(ALICE) == "0101"
    assert await db.stream_keys.revoke(ALICE) is None
    assert await db.stream_keys.owner_of(DIGEST_A) is None


async def test_deleting_the_account_deletes_its_key(db: Database) -> None:
    await _accounts(db)
    await db.stream_keys.put(ALICE, DIGEST_A, "0101", b"a")
    await db.stream_keys.put(BOB, DIGEST_B, "0202", b"b")
    assert await db.accounts.delete(*ALICE)
    assert await db.stream_keys.owner_of(DIGEST_A) is None
    assert await rows(db, "SELECT key_id FROM stream_keys") == [("0202",)]


async def test_rules_keep_their_order_and_are_unique(db: Database) -> None:
    assert await db.stream_rules.add("publish live/* anyone")
    assert await db.stream_rules.add("play live/* anyone")
    assert not await db.stream_rules.add("publish live/* anyone")
    assert await db.stream_rules.rules() == ["publish live/* anyone", "play live/* anyone"]
    assert await db.stream_rules.remove("publish live/* anyone")
    assert not await db.stream_rules.remove("publish live/* anyone")
    assert await db.stream_rules.rules() == ["play live/* anyone"]


async def test_a_token_has_one_first_user_across_processes(db_url: str) -> None:
    databases = [await Database.open(db_url) for _ in range(3)]
    try:
        firsts = await asyncio.gather(
            *(
                d.stream_token_uses.claim("tok", f"client-{n}", "node", 2_000_000_000)
                for n, d in enumerate(databases)
                for _ in range(2)
            )
        )
    finally:
        for d in databases:
            await d.close()
    assert len(set(firsts)) == 1


async def test_expired_token_uses_are_forgotten(db: Database) -> None:
    await db.stream_token_uses.claim("old", "1", "n", 100)
    await db.stream_token_uses.claim("new", "1", "n", 2**32 - 1)  # uint32: wider than INTEGER
    assert await db.stream_token_uses.forget_expired(100) == 1
    assert await db.stream_token_uses.claim("old", "2", "n", 100) == ("2", "n")
    assert await db.stream_token_uses.claim("new", "2", "n", 2**32 - 1) == ("1", "n")


def _row(stream: str, client: str, *, kind: str = "publish", seen: float = 2.0) -> LiveSessionRow:
    return LiveSessionRow(kind, stream, "alice@localhost", client, "nginx", None, 1.0, seen, True)


async def test_live_sessions_replace_and_change(db: Database) -> None:
    a, b, c = _row("live/a", "1"), _row("live/b", "2"), _row("live/a", "3", kind="play")
    await db.live_sessions.replace([a, b])
    assert await db.live_sessions.load() == [a, b]
    b2 = b._replace(last_seen=9.0, confirmed=False)
    await db.live_sessions.change([a.key, b.key], [b2, c])
    assert sorted(await db.live_sessions.load()) == sorted([b2, c])
    await db.live_sessions.replace([])
    assert await db.live_sessions.load() == []


async def test_a_publication_and_a_viewing_may_share_a_client_id(db: Database) -> None:
    sessions = [_row("live/a", "1"), _row("live/a", "1", kind="play")]
    await db.live_sessions.replace(sessions)
    assert len(await db.live_sessions.load()) == 2


def test_migration_0006_follows_0005_and_downgrades(tmp_path: Path) -> None:
    script = ScriptDirectory.from_config(alembic_config()).get_revision("0006")
    assert script is not None and script.down_revision == "0005"
    assert head_revision() >= "0006"
    path = tmp_path / "down.db"
    cfg = alembic_config(f"sqlite+aiosqlite:///{path}")
    command.upgrade(cfg, "0006")
    command.downgrade(cfg, "0005")
    with sqlite3.connect(path) as conn:
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert not tables & {"stream_keys", "stream_rules", "stream_token_uses", "live_sessions"}
    assert "accounts" in tables
