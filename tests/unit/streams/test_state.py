"""`open_stream_state`: the stores the server and ``chatgate streams`` share, on
one database and one data directory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.auth.internal import bump_credentials_stamp
from chatgate.storage.database import Database
from chatgate.streams.keys import DatabaseStreamKeys
from chatgate.streams.live import Publication
from chatgate.streams.one_time import DatabaseOneTimeTokens
from chatgate.streams.rule_store import DatabaseRuleStore
from chatgate.streams.signal import STAMP_CHECK_INTERVAL, STREAMS_STAMP
from chatgate.streams.snapshot import DatabaseLiveSnapshot
from chatgate.streams.state import TOKEN_KEY_SECRET, StreamState, open_stream_state


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'var' / 'chatgate.db'}"


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.open(db_url)
    await database.accounts.create("alice", "localhost", {})
    try:
        yield database
    finally:
        await database.close()


async def test_the_state_is_on_the_database(db: Database, tmp_path: Path) -> None:
    state = await open_stream_state(db, tmp_path)
    assert isinstance(state, StreamState)
    assert isinstance(state.keys, DatabaseStreamKeys)
    assert isinstance(state.rules, DatabaseRuleStore)
    assert isinstance(state.one_time, DatabaseOneTimeTokens)
    assert isinstance(state.snapshot, DatabaseLiveSnapshot)
    assert TOKEN_KEY_SECRET == "stream-token-key-1"  # the name http/listener.py used
    assert state.token_keys == {1: await db.secrets.get_or_create(TOKEN_KEY_SECRET, b"x")}
    assert len(state.token_keys[1]) == 32


async def test_two_openings_share_everything(db_url: str, tmp_path: Path) -> None:
    server_db, cli_db = await Database.open(db_url), await Database.open(db_url)
    try:
        await server_db.accounts.create("alice", "localhost", {})
        server = await open_stream_state(server_db, tmp_path)
        cli = await open_stream_state(cli_db, tmp_path)
        assert server.token_keys == cli.token_keys
        key = await cli.keys.issue("alice@localhost")
        assert (await server.keys.owner(key)) == (await cli.keys.owner(key))
        assert await server.keys.key_of("alice@localhost") == key
        assert await cli.rules.add("publish live/* authenticated")
        assert await server.rules.rules() == ["publish live/* authenticated"]
        assert await cli.one_time.claim("tok", "1", "n", 2_000_000_000)
        assert not await server.one_time.claim("tok", "2", "n", 2_000_000_000)
        await server.snapshot.save([Publication("live/a", "alice@localhost", "1", "n", 1.0, 2.0)])
        assert [s.stream for s in await cli.snapshot.load()] == ["live/a"]
        # the CLI's changes replaced the stamp the server's rule book watches
        assert (tmp_path / STREAMS_STAMP).exists()
        assert server.signal.changed()
        assert not server.signal.changed()
    finally:
        await server_db.close()
        await cli_db.close()


async def test_the_keys_drop_a_deleted_accounts_owner(db: Database, tmp_path: Path) -> None:
    state = await open_stream_state(db, tmp_path)
    key = await state.keys.issue("alice@localhost")
    assert await state.keys.owner(key) is not None  # cached
    assert await db.accounts.delete("alice", "localhost")
    bump_credentials_stamp(tmp_path)  # as `chatgate user del` and unregistration do
    await asyncio.sleep(STAMP_CHECK_INTERVAL * 1.5)  # the watchers' real clock
    assert await state.keys.owner(key) is None
