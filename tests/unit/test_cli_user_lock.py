"""`chatgate user lock` / `unlock`: no login of a locked account succeeds, its data
stays, and a running server (another process) learns at once through the stamp."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chatgate.auth import internal
from chatgate.auth.internal import ACCOUNT_LOCKED, InternalProvider, stamp_path
from chatgate.cli.user import user_app
from chatgate.storage.database import Database
from chatgate.storage.records import RosterItem

from .cli_support import db_path, with_db

BASE = """
[server]
domain = "localhost"
data_dir = "var"
[storage]
url = "sqlite+aiosqlite:///var/chatgate.db"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "chatgate.toml"
    path.write_text(BASE, encoding="utf-8")
    return path


def cli(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(user_app, [*args, "--config", str(config)], input=input)


def login(config: Path, username: str, password: str) -> tuple[bool, str | None]:
    """What a server's provider (a fresh one: another process) answers a password."""

    def check(db: Database) -> Awaitable[tuple[bool, str | None]]:
        provider = InternalProvider(db.accounts, cache_size=10, data_dir=config.parent / "var")
        return provider.verify_password_or_held(username, "localhost", password)

    return with_db(config, check)


def test_lock_stops_logins_keeps_the_account_and_unlock_restores_them(config: Path) -> None:
    assert cli(config, "add", "alice", "--password-stdin", input="alice-pw-1\n").exit_code == 0
    with_db(config, lambda db: db.roster.put(("alice", "localhost"), RosterItem("bob@localhost")))
    stamp = stamp_path(config.parent / "var").read_bytes()

    result = cli(config, "lock", "Alice")
    assert result.exit_code == 0, result.output
    assert "user alice@localhost locked" in result.stdout
    assert stamp_path(config.parent / "var").read_bytes() != stamp  # a running server learns
    assert login(config, "alice", "alice-pw-1") == (False, ACCOUNT_LOCKED)
    assert login(config, "alice", "wrong-pw-1") == (False, None)
    assert cli(config, "list").stdout.splitlines() == ["alice@localhost (locked)"]
    again = cli(config, "lock", "alice")
    assert again.exit_code == 0 and "was locked already" in again.stdout
    # Locked is not deleted: the name stays taken, the roster stays.
    taken = cli(config, "add", "alice", "--password-stdin", input="other-pw-1\n")
    assert taken.exit_code == 1 and "already exists" in taken.stderr
    items = with_db(config, lambda db: db.roster.items(("alice", "localhost")))
    assert [i.jid for i in items] == ["bob@localhost"]

    result = cli(config, "unlock", "alice")
    assert result.exit_code == 0 and "user alice@localhost unlocked" in result.stdout
    assert login(config, "alice", "alice-pw-1") == (True, None)
    assert cli(config, "list").stdout.splitlines() == ["alice@localhost"]
    again = cli(config, "unlock", "alice")
    assert again.exit_code == 0 and "was unlocked already" in again.stdout


def test_a_password_set_while_locked_waits_for_the_unlock(config: Path) -> None:
    cli(config, "add", "alice", "--password-stdin", input="alice-pw-1\n")
    cli(config, "lock", "alice")
    result = cli(config, "passwd", "alice", "--password-stdin", input="alice-pw-2\n")
    assert result.exit_code == 0, result.output
    assert login(config, "alice", "alice-pw-2") == (False, ACCOUNT_LOCKED)
    cli(config, "unlock", "alice")
    assert login(config, "alice", "alice-pw-2") == (True, None)


@pytest.mark.parametrize("command", ["lock", "unlock"])
def test_locking_an_unknown_account_exits_1(config: Path, command: str) -> None:
    result = cli(config, command, "nobody")
    assert result.exit_code == 1
    assert "no such user nobody@localhost" in result.stderr


def test_a_running_server_refuses_a_cached_account_once_locked(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(internal, "STAMP_CHECK_INTERVAL", 0.0)
    cli(config, "add", "alice", "--password-stdin", input="alice-pw-1\n")
    # A server's provider on its own event loop, alice's keys in memory as after a start.
    loop = asyncio.new_event_loop()
    db = loop.run_until_complete(Database.open(f"sqlite+aiosqlite:///{db_path(config)}"))
    provider = InternalProvider(db.accounts, cache_size=10, data_dir=config.parent / "var")
    try:
        loop.run_until_complete(provider.warm())
        assert provider.cached == 1

        def logs_in() -> bool:
            return loop.run_until_complete(
                provider.verify_password("alice", "localhost", "alice-pw-1")
            )

        assert logs_in()
        assert cli(config, "lock", "alice").exit_code == 0  # the command, its own loop
        assert not logs_in()
        assert cli(config, "unlock", "alice").exit_code == 0
        assert logs_in()
    finally:
        loop.run_until_complete(provider.close())
        loop.run_until_complete(db.close())
        loop.close()
