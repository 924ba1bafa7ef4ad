"""Issue 9 item 7 at the command line: `chatgate user add`, `passwd` and `import` refuse a
password over 1,024 bytes before PRECIS prepares it, with the reason, and store nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chatgate.auth import credentials
from chatgate.cli.user import user_app

from .cli_support import with_db

BASE = """
[server]
domain = "localhost"
data_dir = "var"
[storage]
url = "sqlite+aiosqlite:///var/chatgate.db"
"""
LONG = "é" * 513  # 1,026 bytes in 513 characters


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "chatgate.toml"
    path.write_text(BASE, encoding="utf-8")
    return path


@pytest.fixture
def precis(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lengths PRECIS OpaqueString was asked to prepare."""
    seen: list[int] = []
    real = credentials._opaque

    class Spy:
        def enforce(self, text: str) -> str:
            seen.append(len(text))
            return real.enforce(text)

    monkeypatch.setattr(credentials, "_opaque", Spy())
    return seen


def cli(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(user_app, [*args, "--config", str(config)], input=input)


def test_add_refuses_an_over_long_password(config: Path, precis: list[int]) -> None:
    result = cli(config, "add", "alice", "--password-stdin", input=LONG + "\n")
    assert result.exit_code == 2
    assert "the password is longer than 1024 bytes" in result.stderr
    assert LONG not in result.output
    assert precis == []
    assert with_db(config, lambda db: db.accounts.count()) == 0


def test_add_accepts_exactly_1024_bytes(config: Path) -> None:
    result = cli(config, "add", "alice", "--password-stdin", input="é" * 512 + "\n")
    assert result.exit_code == 0, result.output


def test_passwd_refuses_an_over_long_password(config: Path, precis: list[int]) -> None:
    assert cli(config, "add", "alice", "--password-stdin", input="old password\n").exit_code == 0
    precis.clear()
    result = cli(config, "passwd", "alice", "--password-stdin", input="p" * 100_000 + "\n")
    assert result.exit_code == 2
    assert "the password is longer than 1024 bytes" in result.stderr
    assert precis == []


def test_import_rejects_over_long_passwords_by_line(
    config: Path, tmp_path: Path, precis: list[int]
) -> None:
    file = tmp_path / "users.csv"
    file.write_text(f"alice,{LONG}\nbob,bobs password\n", encoding="utf-8")
    result = cli(config, "import", str(file))
    assert result.exit_code == 2  # all or nothing: bob's good line is not imported either
    assert "  line 1: alice: the password is longer than 1024 bytes" in result.stdout
    assert len(LONG) not in precis
    assert with_db(config, lambda db: db.accounts.count()) == 0
