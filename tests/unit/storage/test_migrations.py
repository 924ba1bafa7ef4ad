"""Alembic migrations: run from code, idempotent, and matching the models exactly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from chatgate.storage.database import Database
from chatgate.storage.engine import create_engine
from chatgate.storage.migrate import alembic_config, current_revision, head_revision, migrate
from chatgate.storage.models import Base

TABLES = {
    "accounts",
    "scram_credentials",
    "roster_items",
    "subscription_requests",
    "roster_versions",
    "offline_messages",
    "vcards",
    "legacy_secrets",
    "registration_fields",
    "pending_registrations",
    "registration_invites",
    "installation_secrets",
    "stream_keys",
    "stream_rules",
    "stream_token_uses",
    "stream_token_revocations",
    "live_sessions",
    "admin_users",
    "admin_tokens",
    "admin_console_sessions",
    "admin_audit",
    # issue 15's features
    "archive_messages",
    "archive_prefs",
    "muc_rooms",
    "muc_affiliations",
    "private_xml",
    "pubsub_nodes",
    "pubsub_items",
    "blocklist_items",
    "push_registrations",
    "upload_slots",
}


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


async def test_migrate_creates_every_table_and_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "chatgate.db"
    await migrate(f"sqlite+aiosqlite:///{path}")
    assert _tables(path) == TABLES | {"alembic_version"}


async def _table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_migrate_from_an_empty_database_to_head_and_back(empty_db_url: str) -> None:
    """Every migration runs on each backend from nothing to head, down to nothing
    and up again (SQLite in batch mode, PostgreSQL with plain ALTERs)."""
    await migrate(empty_db_url)
    assert await _table_names(empty_db_url) == TABLES | {"alembic_version"}

    def downgrade_to_base(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "base")

    engine = create_engine(empty_db_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(downgrade_to_base)
    finally:
        await engine.dispose()
    assert await _table_names(empty_db_url) == {"alembic_version"}
    await migrate(empty_db_url)
    assert await _table_names(empty_db_url) == TABLES | {"alembic_version"}


async def test_migrate_twice_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}"
    await migrate(url)
    db = await Database.open(url)
    await db.accounts.create("alice", "localhost", {})
    await db.close()
    await migrate(url)
    db = await Database.open(url)
    try:
        assert await db.accounts.exists("alice", "localhost")
        assert await current_revision(db.engine) == head_revision()
    finally:
        await db.close()


async def test_models_match_the_migrations(db: Database) -> None:
    def diff(sync_conn: Connection) -> list:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


@pytest.mark.sqlite_only
async def test_sqlite_connections_enforce_foreign_keys_and_use_wal(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
        # synchronous: 1 is NORMAL
        assert (await conn.execute(text("PRAGMA synchronous"))).scalar_one() == 1


async def test_memory_database_is_shared_by_all_repositories() -> None:
    db = await Database.open("sqlite+aiosqlite:///:memory:")
    try:
        await db.accounts.create("alice", "localhost", {})
        assert await db.roster.version(("alice", "localhost")) == 0
        assert await db.accounts.count() == 1
    finally:
        await db.close()


async def test_engine_for_file_url_creates_parent_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await engine.dispose()
    assert path.parent.is_dir()


def test_migration_0007_adds_the_lock_and_keeps_what_accounts_own(tmp_path: Path) -> None:
    # SQLite copies a table that batch mode cannot ALTER, and dropping the old
    # `accounts` with foreign keys on would cascade: the column must be added in place.
    path = tmp_path / "chatgate.db"
    cfg = alembic_config(f"sqlite+aiosqlite:///{path}")
    command.upgrade(cfg, "0006")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO accounts (username, domain, created) VALUES ('alice', 'localhost', '2024-01-01')"
        )
        conn.execute("INSERT INTO vcards (account_id, xml) VALUES (1, '<vCard/>')")
        conn.execute("INSERT INTO roster_versions (account_id, version) VALUES (1, 3)")
    command.upgrade(cfg, "0007")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT username, locked FROM accounts").fetchall() == [("alice", 0)]
        assert conn.execute("SELECT count(*) FROM vcards").fetchone() == (1,)
        assert conn.execute("SELECT version FROM roster_versions").fetchone() == (3,)
    command.downgrade(cfg, "0006")
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(accounts)")}
        assert "locked" not in columns
        assert conn.execute("SELECT count(*) FROM vcards").fetchone() == (1,)


async def test_upgrading_an_old_database_keeps_what_accounts_own(tmp_path: Path) -> None:
    """Every migration after the first, run on a database holding an account with a
    vCard: nothing hanging off the account is lost.  (An ALTER that made Alembic
    copy `accounts` and drop the old table cascaded the drop on SQLite, foreign
    keys on, and deleted every vCard, roster and credential: 0003 did.)"""
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    try:

        def upgrade_to_first(connection: Connection) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "0001")

        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to_first)
            await conn.execute(
                text(
                    "INSERT INTO accounts (id, username, domain, created)"
                    " VALUES (1, 'alice', 'localhost', '2026-01-01 00:00:00')"
                )
            )
            await conn.execute(text("INSERT INTO vcards (account_id, xml) VALUES (1, '<v/>')"))
    finally:
        await engine.dispose()
    await migrate(url)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT xml FROM vcards").fetchall() == [("<v/>",)]
        assert conn.execute("SELECT username FROM accounts").fetchall() == [("alice",)]
