"""`chatgate registration`: approving and rejecting held registrations from the command line.

The registrations are made the way in-band registration makes them
(`PendingRegistrationRepository.create_pending` with keys and legacy secrets), then the CLI
runs through the top-level `chatgate` app, as an operator types it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chatgate.auth.credentials import ScramKeys, derive_all
from chatgate.auth.internal import InternalProvider, stamp_path
from chatgate.cli import app
from chatgate.storage.database import Database
from chatgate.storage.repositories.legacy import LegacySecrets

from .cli_support import with_db

CONFIG = """
[server]
domain = "localhost"
data_dir = "var"
[storage]
url = "sqlite+aiosqlite:///var/chatgate.db"
[hosts."example.net"]
[hosts."guest.localhost"]
anonymous = true
[modules.register]
enabled = true
approval = true
"""
WHEN = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
DIGEST = LegacySecrets(digest_password="newbie-pw-1")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "chatgate.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def keys() -> dict[str, ScramKeys]:
    return derive_all("newbie-pw-1")


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--config", str(config)])


def hold(
    config: Path, keys: dict[str, ScramKeys], username: str, domain: str = "localhost"
) -> None:
    """A registration as in-band registration holds it with `approval = true`."""
    with_db(
        config,
        lambda db: db.pending_registrations.create_pending(
            username,
            domain,
            keys,
            DIGEST,
            {"email": f"{username}@mail"},
            address="192.0.2.7",
            now=WHEN,
        ),
    )


def login_ok(config: Path, username: str, domain: str = "localhost") -> bool:
    def check(db: Database) -> Awaitable[bool]:
        provider = InternalProvider(db.accounts, cache_size=10, data_dir=None)
        return provider.verify_password(username, domain, "newbie-pw-1")

    return with_db(config, check)


def test_pending_lists_who_when_and_from_where(config: Path, keys: dict[str, ScramKeys]) -> None:
    hold(config, keys, "newbie")
    hold(config, keys, "other", "example.net")
    result = cli(config, "registration", "pending")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("│ ")]
    assert len(rows) == 2
    assert "newbie@localhost" in rows[0] and "2025-03-01 12:30:00" in rows[0]
    assert "192.0.2.7" in rows[0] and "email=newbie@mail" in rows[0]
    assert "other@example.net" in rows[1]
    only = cli(config, "registration", "pending", "--domain", "example.net")
    assert "other@example.net" in only.stdout and "newbie" not in only.stdout


def test_pending_with_none_says_so(config: Path) -> None:
    result = cli(config, "registration", "pending")
    assert result.exit_code == 0
    assert "no registrations awaiting approval" in result.stdout


def test_approve_makes_the_account_with_everything_registration_stored(
    config: Path, keys: dict[str, ScramKeys]
) -> None:
    hold(config, keys, "newbie")
    assert not login_ok(config, "newbie")
    result = cli(config, "registration", "approve", "Newbie@localhost")
    assert result.exit_code == 0, result.output
    assert "newbie@localhost approved" in result.stdout
    assert login_ok(config, "newbie")
    assert with_db(config, lambda db: db.legacy.secrets(("newbie", "localhost"))) == DIGEST
    fields = with_db(config, lambda db: db.registration.fields(("newbie", "localhost")))
    assert fields == {"email": "newbie@mail"}
    assert with_db(config, lambda db: db.pending_registrations.pending()) == []
    assert stamp_path(config.parent / "var").exists()  # running servers drop their caches
    again = cli(config, "registration", "approve", "newbie")
    assert again.exit_code == 1
    assert "no registration of newbie@localhost is pending" in again.stderr


def test_approve_on_a_virtual_host(config: Path, keys: dict[str, ScramKeys]) -> None:
    hold(config, keys, "newbie", "example.net")
    assert cli(config, "registration", "approve", "newbie").exit_code == 1  # other domain
    assert cli(config, "registration", "approve", "newbie@example.net").exit_code == 0
    assert login_ok(config, "newbie", "example.net")


def test_approve_of_a_name_taken_meanwhile_exits_1_and_keeps_it_pending(
    config: Path, keys: dict[str, ScramKeys]
) -> None:
    hold(config, keys, "newbie")
    with_db(config, lambda db: db.accounts.create("newbie", "localhost", {}))
    result = cli(config, "registration", "approve", "newbie")
    assert result.exit_code == 1
    assert "exists already" in result.stderr
    assert len(with_db(config, lambda db: db.pending_registrations.pending())) == 1


def test_reject_deletes_the_registration_and_frees_the_name(
    config: Path, keys: dict[str, ScramKeys]
) -> None:
    hold(config, keys, "newbie")
    result = cli(config, "registration", "reject", "newbie")
    assert result.exit_code == 0, result.output
    assert "registration of newbie@localhost rejected" in result.stdout
    assert with_db(config, lambda db: db.pending_registrations.pending()) == []
    assert not with_db(config, lambda db: db.accounts.exists("newbie", "localhost"))
    with_db(
        config, lambda db: db.registration.create_account("newbie", "localhost", keys, DIGEST, {})
    )
    assert cli(config, "registration", "reject", "newbie").exit_code == 1


@pytest.mark.parametrize(
    ("user", "reason"),
    [
        ("newbie@guest.localhost", "anonymous host"),
        ("newbie@example.org", "not served"),
        ("new bie", "invalid username"),
    ],
)
def test_bad_names_exit_2(config: Path, user: str, reason: str) -> None:
    for command in ("approve", "reject"):
        result = cli(config, "registration", command, user)
        assert result.exit_code == 2
        assert reason in result.stderr
