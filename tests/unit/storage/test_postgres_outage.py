"""PostgreSQL out of reach: repository calls fail promptly with `StorageUnavailable`,
the same `Database` works again once the server is back (its pool recovers by
itself), and a transaction the outage cut leaves nothing behind.

These tests stop and pause their own cluster (the session's is shared), one
database per test on it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from chatgate.auth.credentials import ScramKeys
from chatgate.storage import engine as engine_module
from chatgate.storage import migrate as migrate_module
from chatgate.storage.database import Database
from chatgate.storage.errors import StorageUnavailable
from chatgate.storage.migrate import current_revision, head_revision
from chatgate.storage.repositories.legacy_records import LegacySecrets
from tests.postgres_server import PostgresServer, postgres_available, start_postgres

from .conftest import ALICE, BOB, rows

pytestmark = pytest.mark.postgresql

CAROL = ("carol", "localhost")

#: seconds a call may take to fail when the server is down (refused at once)
PROMPT = 3.0

_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    if not postgres_available():
        pytest.skip("PostgreSQL is not installed (tests/install-system-deps.sh installs it)")
    started = start_postgres()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def url(server: PostgresServer) -> Iterator[str]:
    if not server.running:
        server.start()
    name = f"outage{next(_numbers)}"
    yield server.create_database(name)
    if not server.running:
        server.start()
    server.drop_database(name)


async def _fails_promptly(call: Any) -> float:
    start = time.monotonic()
    with pytest.raises(StorageUnavailable):
        await call
    return time.monotonic() - start


async def test_calls_fail_promptly_and_the_same_database_recovers(
    server: PostgresServer, url: str, keys: dict[str, ScramKeys]
) -> None:
    db = await Database.open(url)
    try:
        await db.accounts.create(*ALICE, keys)
        assert await db.accounts.exists(*ALICE)  # a pooled connection, now idle

        server.stop()
        assert await _fails_promptly(db.accounts.exists(*ALICE)) < PROMPT
        assert await _fails_promptly(db.accounts.create(*BOB, keys)) < PROMPT
        assert await _fails_promptly(db.roster.items(ALICE)) < PROMPT

        server.start()
        # the pool's connections died with the server: replaced, no error seen
        assert await db.accounts.exists(*ALICE)
        assert not await db.accounts.exists(*BOB)  # the failed create wrote nothing
        await db.accounts.create(*BOB, keys)
        assert await db.accounts.exists(*BOB)
    finally:
        await db.close()


async def test_opening_fails_promptly_while_the_server_is_down(
    server: PostgresServer, url: str
) -> None:
    server.stop()
    assert await _fails_promptly(Database.open(url)) < PROMPT
    server.start()
    db = await Database.open(url)
    await db.close()


async def test_a_transaction_cut_by_the_outage_leaves_nothing(
    server: PostgresServer, url: str, keys: dict[str, ScramKeys]
) -> None:
    """Registration writes the account, its keys, its legacy secrets and its fields
    in one transaction: the server stops just before the last insert."""
    db = await Database.open(url)
    try:

        def stop_before_fields(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.startswith("INSERT INTO registration_fields"):
                server.stop()

        event.listen(db.engine.sync_engine, "before_cursor_execute", stop_before_fields)
        try:
            with pytest.raises(StorageUnavailable):
                await db.registration.create_account(
                    *CAROL, keys, LegacySecrets(digest_password="pw"), {"email": "c@x.org"}
                )
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", stop_before_fields)
        assert not server.running

        server.start()
        assert not await db.accounts.exists(*CAROL)
        for table in ("accounts", "scram_credentials", "legacy_secrets", "registration_fields"):
            assert await rows(db, f"SELECT count(*) FROM {table}") == [(0,)], table
        # and the name is free: the same registration succeeds now
        await db.registration.create_account(
            *CAROL, keys, LegacySecrets(digest_password="pw"), {"email": "c@x.org"}
        )
        assert await db.registration.fields(CAROL) == {"email": "c@x.org"}
    finally:
        await db.close()


async def test_a_server_that_does_not_answer_times_out(
    server: PostgresServer, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A paused postmaster accepts TCP connections (the kernel does) but never
    answers: connecting gives up after the connect timeout, not minutes later."""
    monkeypatch.setattr(engine_module, "POSTGRES_CONNECT_TIMEOUT", 1.0)
    db = await Database.open(url)
    try:
        await db.engine.dispose()  # no pooled connection: the next call connects
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            elapsed = await _fails_promptly(db.accounts.exists(*ALICE))
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert 0.9 < elapsed < 1.0 + PROMPT
        assert not await db.accounts.exists(*ALICE)
    finally:
        await db.close()


async def test_a_cancelled_query_stays_a_cancellation(url: str) -> None:
    """A task cancelled mid-query (a client gone, a handler timed out) sees
    CancelledError, not StorageUnavailable, and the database serves the next call."""
    db = await Database.open(url)
    try:

        async def slow() -> None:
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(10)"))

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not await db.accounts.exists(*ALICE)
    finally:
        await db.close()


async def test_a_statement_past_the_time_limit_fails_but_a_migration_may_take_longer(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server gone silent mid-statement fails the call after the statement
    limit; a migration (which may rewrite a large table) has no such limit."""
    monkeypatch.setattr(engine_module, "POSTGRES_COMMAND_TIMEOUT", 0.5)
    real_upgrade = migrate_module._upgrade

    def slow_upgrade(connection: Connection) -> None:
        connection.execute(text("SELECT pg_sleep(1)"))
        real_upgrade(connection)

    monkeypatch.setattr(migrate_module, "_upgrade", slow_upgrade)
    db = await Database.open(url)
    try:
        assert await current_revision(db.engine) == head_revision()

        async def slow_statement() -> None:
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(1)"))

        assert await _fails_promptly(slow_statement()) < 0.9
        assert not await db.accounts.exists(*ALICE)
    finally:
        await db.close()


async def test_the_first_call_after_a_quiet_restart_succeeds(
    server: PostgresServer, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No call while the server was down: the pooled connection it closed has been
    idle past the ping threshold, is pinged at checkout, and replaced."""
    monkeypatch.setattr(engine_module, "POSTGRES_PING_AFTER_IDLE", 0.2)
    db = await Database.open(url)
    try:
        assert not await db.accounts.exists(*ALICE)
        server.stop()
        server.start()
        await asyncio.sleep(0.3)
        assert not await db.accounts.exists(*ALICE)
    finally:
        await db.close()


async def test_a_connection_in_steady_use_is_not_pinged(
    server: PostgresServer, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path pays no ping.  The price: a restart no call noticed fails the
    first call on a dead connection, and the pool is renewed for the next."""
    monkeypatch.setattr(engine_module, "POSTGRES_PING_AFTER_IDLE", 60.0)
    db = await Database.open(url)
    pings = 0
    real_ping = type(db.engine.dialect).do_ping

    def counting_ping(self: Any, dbapi_connection: Any) -> bool:
        nonlocal pings
        pings += 1
        return bool(real_ping(self, dbapi_connection))

    monkeypatch.setattr(type(db.engine.dialect), "do_ping", counting_ping)
    try:
        for _ in range(20):
            assert not await db.accounts.exists(*ALICE)
        assert pings == 0
        server.stop()
        server.start()
        await _fails_promptly(db.accounts.exists(*ALICE))
        assert not await db.accounts.exists(*ALICE)
    finally:
        await db.close()
