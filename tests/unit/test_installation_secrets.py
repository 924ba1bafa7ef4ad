"""Per-process and per-data-directory secrets are gone: the SASL decoy secret lives in
the database, an old ``server.secret`` is moved there, and the legacy-auth decoy
secret too; unknown users' PLAIN checks cost what a password set now costs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from chatgate.auth import credentials, internal
from chatgate.auth.credentials import ScramKeys, derive_all
from chatgate.auth.internal import InternalProvider
from chatgate.server import LEGACY_SECRET_FILE, SASL_SECRET, load_sasl_secret
from chatgate.storage.database import Database


@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    database = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}")
    try:
        yield database
    finally:
        await database.close()


async def test_two_data_directories_on_one_database_share_the_secret(
    db: Database, tmp_path: Path
) -> None:
    one = await load_sasl_secret(db.secrets, tmp_path / "one")
    two = await load_sasl_secret(db.secrets, tmp_path / "two")
    assert one == two and len(one) == 32
    assert not (tmp_path / "one" / LEGACY_SECRET_FILE).exists()


async def test_an_old_server_secret_is_moved_into_the_database(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    (data_dir / LEGACY_SECRET_FILE).write_bytes(b"k" * 32)
    with caplog.at_level(logging.INFO, logger="chatgate"):
        assert await load_sasl_secret(db.secrets, data_dir) == b"k" * 32
    assert not (data_dir / LEGACY_SECRET_FILE).exists()
    assert "into the database" in caplog.text
    # The next start reads it from the database.
    assert await load_sasl_secret(db.secrets, data_dir) == b"k" * 32
    assert await db.secrets.get_or_create(SASL_SECRET, b"other") == b"k" * 32


async def test_a_second_old_secret_yields_to_the_database(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stored = await load_sasl_secret(db.secrets, tmp_path / "one")
    other = tmp_path / "two"
    other.mkdir()
    (other / LEGACY_SECRET_FILE).write_bytes(b"z" * 32)
    with caplog.at_level(logging.WARNING, logger="chatgate"):
        assert await load_sasl_secret(db.secrets, other) == stored
    assert not (other / LEGACY_SECRET_FILE).exists()
    assert "differs from the database's secret" in caplog.text


@pytest.mark.parametrize("iterations", [4096, 10_000])
async def test_unknown_users_plain_check_costs_a_password_set_now(
    db: Database, iterations: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The work is PBKDF2 over the iteration count: the unknown name's check must use
    the same hash and count as the account's (no timing in the test)."""
    await db.accounts.create("alice", "localhost", derive_all("pw", iterations=iterations))
    provider = InternalProvider(db.accounts, cache_size=10, data_dir=None)
    provider.set_decoy_iterations(iterations)
    checked: list[ScramKeys] = []
    real = credentials.verify_password

    def recording(password: str, keys: ScramKeys) -> bool:
        checked.append(keys)
        return real(password, keys)

    monkeypatch.setattr(internal.credentials, "verify_password", recording)
    assert not await provider.verify_password("alice", "localhost", "wrong")
    assert not await provider.verify_password("nobody", "localhost", "wrong")
    known, unknown = checked
    assert (unknown.hash_name, unknown.iterations) == (known.hash_name, known.iterations)
    assert unknown.iterations == iterations
