"""The command line with `[cluster] enabled` and the cluster's Redis out of reach: a
change is stored, and the command says so, says the running nodes were not told
and what to do, and exits 1; no traceback.  The database out of reach is one
error line as well, its URL shown without the password."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chatgate.cli import app
from tests.ports import free_port


def closed_port() -> int:
    """A loopback port nothing listens on (outside the ephemeral range: `tests.ports`)."""
    return free_port()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "chatgate.toml"
    path.write_text(
        f"""
[server]
domain = "localhost"
data_dir = "var"
[storage]
url = "sqlite+aiosqlite:///var/chatgate.db"
[streams]
enabled = true
[cluster]
enabled = true
redis_url = "redis://127.0.0.1:{closed_port()}/0"
""",
        encoding="utf-8",
    )
    return path


def cli(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, [*args, "--config", str(config)], input=input)


def assert_clean_failure(result: Result) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "NotAnnounced" not in result.output
    assert "stored" in result.output and "Do not repeat the change" in result.output
    assert "restart" in result.output


def test_user_add_says_it_is_stored_but_not_announced(config: Path) -> None:
    added = cli(config, "user", "add", "alice", input="pencil-case\npencil-case\n")
    assert_clean_failure(added)
    assert "alice@localhost" in added.output
    listed = cli(config, "user", "list")
    assert listed.exit_code == 0 and "alice@localhost" in listed.stdout  # it is stored


def test_user_delete_says_it_is_stored_but_not_announced(config: Path) -> None:
    cli(config, "user", "add", "alice", input="pencil-case\npencil-case\n")
    deleted = cli(config, "user", "del", "alice", "--yes")
    assert_clean_failure(deleted)
    assert "alice@localhost" not in cli(config, "user", "list").stdout


def test_streams_change_says_it_is_stored_but_not_announced(config: Path) -> None:
    added = cli(config, "streams", "rules", "add", "play public/* anonymous")
    assert_clean_failure(added)
    listed = cli(config, "streams", "rules", "list")
    assert "public/*" in listed.stdout


def test_user_import_shows_its_summary_then_says_not_announced(
    config: Path, tmp_path: Path
) -> None:
    file = tmp_path / "accounts.csv"
    file.write_text("username,password\nbob,password2\ncarol,password3\n", encoding="utf-8")
    imported = cli(config, "user", "import", str(file))
    assert_clean_failure(imported)
    assert "created" in imported.stdout  # the summary of what was stored
    listed = cli(config, "user", "list").stdout
    assert "bob@localhost" in listed and "carol@localhost" in listed


def test_a_database_out_of_reach_is_one_error_line_without_its_password(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pg.toml"
    path.write_text(
        f"""
[server]
domain = "localhost"
data_dir = "var"
[storage]
url = "postgresql+asyncpg://chat:hunter2@127.0.0.1:{closed_port()}/chatgate"
""",
        encoding="utf-8",
    )
    for args in (("user", "list"), ("user", "add", "alice")):
        result = cli(path, *args, input="pencil-case\npencil-case\n")
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output and "hunter2" not in result.output
        assert "cannot be reached" in result.output and "chat:***@127.0.0.1" in result.output


def test_serve_with_redis_out_of_reach_is_one_error_line(config: Path) -> None:
    """The node cannot join its cluster: `serve` says so in one line and exits 1,
    the URL without its password, instead of a chain of tracebacks."""
    text = config.read_text(encoding="utf-8").replace("redis://", "redis://chat:hunter2@")
    config.write_text(text + "[[listeners]]\nport = 0\n[http]\nenabled = false\n", "utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "chatgate", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=config.parent,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr
    assert "error: cannot start: [cluster] redis_url" in " ".join(done.stderr.split())
    assert " ".join(done.stderr.split()).count("cannot be reached") == 1  # said once
