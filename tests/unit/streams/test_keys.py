"""Stream keys on the database (`DatabaseStreamKeys`), on real SQLite files.

Two `Database` objects on one file stand for two processes (the server and
``chatgate streams``): each has its own engine, store, cache and stamp watcher.
The watchers' clocks are in the test's hands, so "after the signal" needs no sleep.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.auth.internal import bump_credentials_stamp
from chatgate.storage.database import Database
from chatgate.streams.keys import (
    CIPHER_SECRET,
    PEPPER_SECRET,
    DatabaseStreamKeys,
    LocalStreamKeys,
)
from chatgate.streams.signal import AnySignal, LocalSignal, StampSignal
from chatgate.streams.stores import KeyOwner, StreamKeyStore

ALICE = "alice@localhost"
BOB = "bob@localhost"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'var' / 'chatgate.db'}"


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.open(db_url)
    await database.accounts.create("alice", "localhost", {})
    await database.accounts.create("bob", "localhost", {})
    try:
        yield database
    finally:
        await database.close()


async def _store(db: Database, signal: StampSignal | LocalSignal | AnySignal) -> DatabaseStreamKeys:
    return await DatabaseStreamKeys.open(db.stream_keys, db.secrets, signal)


async def test_both_stores_implement_the_interface(db: Database) -> None:
    stores: list[StreamKeyStore] = [LocalStreamKeys(), await _store(db, LocalSignal())]
    assert len(stores) == 2


async def test_issue_owner_key_of_and_revoke(db: Database) -> None:
    keys: StreamKeyStore = await _store(db, LocalSignal())
    key = await keys.issue(ALICE)
    assert len(key) == 32
    owner = await keys.owner(key)
    assert owner is not None and owner.account == ALICE and len(owner.key_id) == 18
    assert await keys.key_of(ALICE) == key
    assert await keys.key_of(BOB) is None
    assert [(i.account, i.key_id) for i in await keys.listing()] == [(ALICE, owner.key_id)]
    assert await keys.revoke(ALICE) == owner
    assert await keys.owner(key) is None
    assert await keys.key_of(ALICE) is None
    assert await keys.revoke(ALICE) is None
    assert await keys.listing() == []


async def test_a_new_key_revokes_the_old_one(db: Database) -> None:
    keys = await _store(db, LocalSignal())
    first = await keys.issue(ALICE)
    assert await keys.owner(first) is not None  # cached now
    second = await keys.issue(ALICE)
    assert first != second
    assert await keys.owner(first) is None
    assert (await keys.owner(second)) == KeyOwner(ALICE, (await keys.listing())[0].key_id)


async def test_key_id_is_the_digest_prefix_as_in_memory(db: Database) -> None:
    pepper = await db.secrets.get_or_create(PEPPER_SECRET, b"unused" * 6)
    local = LocalStreamKeys(pepper)
    keys = await _store(db, LocalSignal())
    assert await keys.put(ALICE, "wowza-password-1") == await local.put(ALICE, "wowza-password-1")


async def test_put_takes_wowza_passwords_and_refuses_unfit_keys(db: Database) -> None:
    keys = await _store(db, LocalSignal())
    owner = await keys.put(BOB, "S3cr3t!~pass")
    assert await keys.owner("S3cr3t!~pass") == owner
    assert await keys.key_of(BOB) == "S3cr3t!~pass"
    for unfit in ["short", "with space inside", "x" * 129, "tab\there!", "caf\u00e9-latte", ""]:
        with pytest.raises(ValueError):
            await keys.put(BOB, unfit)
    assert await keys.key_of(BOB) == "S3cr3t!~pass"  # unchanged


async def test_a_key_belongs_to_one_account(db: Database) -> None:
    keys = await _store(db, LocalSignal())
    await keys.put(ALICE, "shared-secret-1")
    with pytest.raises(ValueError, match="another account"):
        await keys.put(BOB, "shared-secret-1")
    owner = await keys.owner("shared-secret-1")
    assert owner is not None and owner.account == ALICE


async def test_an_account_that_does_not_exist_gets_no_key(db: Database) -> None:
    keys = await _store(db, LocalSignal())
    with pytest.raises(ValueError, match="no account carol@localhost"):
        await keys.issue("carol@localhost")
    for not_an_account in ["carol", "@localhost", "carol@", "a@b@c", "a@b/res", "a\x00@b"]:
        with pytest.raises(ValueError):
            await keys.issue(not_an_account)
        assert await keys.key_of(not_an_account) is None
        assert await keys.revoke(not_an_account) is None
    assert await keys.listing() == []


@pytest.mark.parametrize(
    "garbage",
    ["", "x", "short", "y" * 129, "z" * 10_000, "with space", "\udcff" * 20, "\x00" * 32, "é" * 32],
)
async def test_wrong_length_or_garbage_keys_have_no_owner(db: Database, garbage: str) -> None:
    keys = await _store(db, LocalSignal())
    await keys.issue(ALICE)
    assert await keys.owner(garbage) is None


async def test_the_stored_row_does_not_contain_the_key(db: Database, db_url: str) -> None:
    keys = await _store(db, LocalSignal())
    key = await keys.issue(ALICE)
    path = Path(db_url.removeprefix("sqlite+aiosqlite:///"))
    with sqlite3.connect(path) as conn:
        (digest, key_id, sealed) = conn.execute(
            "SELECT digest, key_id, sealed FROM stream_keys"
        ).fetchone()
    dump = b"".join(p.read_bytes() for p in path.parent.glob("chatgate.db*"))
    assert key.encode() not in sealed
    assert key.encode() not in digest
    assert key.encode() not in dump
    assert len(sealed) == 12 + len(key) + 16  # nonce, ciphertext, tag
    assert key_id == digest[:9].hex()


async def test_a_sealed_key_moved_to_another_account_does_not_open(
    db: Database, db_url: str
) -> None:
    keys = await _store(db, LocalSignal())
    await keys.issue(ALICE)
    await keys.put(BOB, "bobs-own-key-1")
    path = Path(db_url.removeprefix("sqlite+aiosqlite:///"))
    with sqlite3.connect(path) as conn:
        ids = dict(conn.execute("SELECT username, id FROM accounts").fetchall())
        (alices,) = conn.execute(
            "SELECT sealed FROM stream_keys WHERE account_id = ?", (ids["alice"],)
        ).fetchone()
        conn.execute("UPDATE stream_keys SET sealed = ? WHERE account_id = ?", (alices, ids["bob"]))
    assert await keys.key_of(BOB) is None  # the account is the associated data


async def test_the_secrets_are_installation_secrets(db: Database) -> None:
    keys = await _store(db, LocalSignal())
    key = await keys.issue(ALICE)
    # A store made later (another process, a restart) with the stored secrets agrees.
    again = await _store(db, LocalSignal())
    assert await again.owner(key) == await keys.owner(key)
    assert await again.key_of(ALICE) == key
    assert len(await db.secrets.get_or_create(CIPHER_SECRET, b"x")) == 32


async def test_two_processes_share_keys_and_see_revocation_after_the_signal(
    db_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    clock = Clock()
    server_db, cli_db = await Database.open(db_url), await Database.open(db_url)
    try:
        await server_db.accounts.create("alice", "localhost", {})
        server = await _store(server_db, StampSignal(data_dir, clock=clock))
        cli = await _store(cli_db, StampSignal(data_dir, clock=clock))
        key = await cli.issue(ALICE)
        found = await server.owner(key)  # no cache entry yet: read from the database
        assert found is not None and found.account == ALICE
        assert await server.key_of(ALICE) == key

        assert await cli.revoke(ALICE) == found
        # Within the signal's check interval the server still answers from its cache ...
        assert await server.owner(key) == found
        # ... and once it looks at the stamp again, no more.
        clock.now += 0.06
        assert await server.owner(key) is None
        assert await server.key_of(ALICE) is None
    finally:
        await server_db.close()
        await cli_db.close()


async def test_a_deleted_accounts_key_stops_at_the_credentials_stamp(
    db: Database, tmp_path: Path
) -> None:
    clock = Clock()
    # as `open_stream_state` makes it, the watchers on our clock
    keys = await _store(
        db,
        AnySignal(
            StampSignal(tmp_path, clock=clock),
            StampSignal(tmp_path, "credentials.stamp", clock=clock),
        ),
    )
    key = await keys.issue(ALICE)
    assert await keys.owner(key) is not None
    assert await db.accounts.delete("alice", "localhost")  # cascade: the row is gone
    bump_credentials_stamp(tmp_path)  # what `chatgate user del` does
    clock.now += 0.06
    assert await keys.owner(key) is None
    assert await keys.listing() == []


async def test_the_cache_is_bounded(db: Database) -> None:
    keys = await DatabaseStreamKeys.open(db.stream_keys, db.secrets, LocalSignal(), cache_size=1)
    a = await keys.issue(ALICE)
    b = await keys.issue(BOB)
    assert await keys.owner(a) is not None
    assert await keys.owner(b) is not None
    assert len(keys._cache) == 1


async def test_secrets_of_the_wrong_size_are_refused(db: Database) -> None:
    with pytest.raises(ValueError):
        DatabaseStreamKeys(
            db.stream_keys, pepper=b"p" * 32, cipher_key=b"k" * 16, signal=LocalSignal()
        )
    with pytest.raises(ValueError):
        DatabaseStreamKeys(db.stream_keys, pepper=b"p", cipher_key=b"k" * 32, signal=LocalSignal())
