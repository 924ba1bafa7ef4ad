"""Which configuration file a command reads (issue 10, items 7, 14 and 18).

`--config` before the subcommand (global) or after it, `CHATGATE_CONFIG`, then
`./chatgate.toml`; and a file that does not exist is an error (exit 2, naming
it) everywhere but `chatgate init`, never a silent "all defaults" with a fresh
database beside the missing file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chatgate.cli import app

from .cli_support import db_path, with_db

CONFIG = """
[server]
domain = "{domain}"
data_dir = "var"
[storage]
url = "sqlite+aiosqlite:///var/chatgate.db"
"""


def write(folder: Path, domain: str = "localhost") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "chatgate.toml"
    path.write_text(CONFIG.format(domain=domain), encoding="utf-8")
    return path


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, and no CHATGATE_CONFIG from the caller's environment."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("CHATGATE_CONFIG", raising=False)
    return folder


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` must refuse before it starts anything: were it to start, fail at once
    (the old behaviour bound the default ports 5222 and 5223)."""
    import chatgate.server

    def run(config: object) -> None:
        raise AssertionError("the server was started")

    monkeypatch.setattr(chatgate.server, "run", run)


def chatgate(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env, input=input)


def accounts(config: Path) -> list[str]:
    return [a.username for a in with_db(config, lambda db: db.accounts.list(None))]


# ---------------------------------------------------------------- item 7: global --config


def test_global_config_before_the_subcommand(cwd: Path, tmp_path: Path) -> None:
    config = write(tmp_path / "site")
    result = chatgate(
        "--config", str(config), "user", "add", "alice", "--password-stdin", input="pencil-pw\n"
    )
    assert result.exit_code == 0, result.output
    assert accounts(config) == ["alice"]
    listed = chatgate("-c", str(config), "user", "list")
    assert listed.stdout.split() == ["alice@localhost"]


def test_subcommand_config_wins_over_global_and_environment(cwd: Path, tmp_path: Path) -> None:
    own, global_, env = (write(tmp_path / n) for n in ("own", "global", "env"))
    args = ["user", "add", "bob", "--password-stdin", "--config", str(own)]
    result = chatgate(
        "--config", str(global_), *args, env={"CHATGATE_CONFIG": str(env)}, input="pencil-pw\n"
    )
    assert result.exit_code == 0, result.output
    assert accounts(own) == ["bob"]
    assert not db_path(global_).exists() and not db_path(env).exists()


def test_global_config_wins_over_the_environment(cwd: Path, tmp_path: Path) -> None:
    global_, env = write(tmp_path / "global"), write(tmp_path / "env")
    result = chatgate(
        "--config",
        str(global_),
        "user",
        "add",
        "carol",
        "--password-stdin",
        env={"CHATGATE_CONFIG": str(env)},
        input="pencil-pw\n",
    )
    assert result.exit_code == 0, result.output
    assert accounts(global_) == ["carol"]
    assert not db_path(env).exists()


def test_environment_wins_over_the_working_folder(cwd: Path, tmp_path: Path) -> None:
    write(cwd)  # ./chatgate.toml
    env = write(tmp_path / "env", domain="env.example")
    result = chatgate("check", env={"CHATGATE_CONFIG": str(env)})
    assert result.exit_code == 0, result.output
    assert "env.example" in result.stdout
    sub_app = CliRunner().invoke(
        app, ["user", "list"], env={"CHATGATE_CONFIG": str(env)}
    )  # the groups read it too
    assert sub_app.exit_code == 0, sub_app.output
    assert db_path(env).exists() and not db_path(cwd / "chatgate.toml").exists()


def test_working_folder_file_is_the_last_resort(cwd: Path) -> None:
    write(cwd, domain="here.example")
    result = chatgate("check")
    assert result.exit_code == 0, result.output
    assert "here.example" in result.stdout


def test_init_writes_where_the_global_config_says(cwd: Path, tmp_path: Path) -> None:
    target = tmp_path / "new.toml"
    result = chatgate("--config", str(target), "init")
    assert result.exit_code == 0, result.output
    assert target.is_file()
    assert not (cwd / "chatgate.toml").exists()


# ---------------------------------------------------------------- item 14: missing file


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--config", "does-not-exist.toml"],
        ["--config", "does-not-exist.toml", "check"],
        ["user", "list", "--config", "does-not-exist.toml"],
        ["user", "add", "alice", "--password-stdin", "--config", "does-not-exist.toml"],
        ["registration", "pending", "--config", "does-not-exist.toml"],
        ["invite", "list", "--config", "does-not-exist.toml"],
        ["serve", "--config", "does-not-exist.toml"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_a_named_file_that_does_not_exist_exits_2_naming_it(cwd: Path, args: list[str]) -> None:
    result = chatgate(*args, input="pencil-pw\n")
    assert result.exit_code == 2, result.output
    assert "does-not-exist.toml does not exist" in result.stderr
    assert "chatgate init" in result.stderr
    assert "configuration OK" not in result.output
    assert list(cwd.iterdir()) == []  # no var/, no database beside the missing file


def test_user_list_with_a_typo_creates_no_database(cwd: Path, tmp_path: Path) -> None:
    write(tmp_path / "site")
    typo = tmp_path / "site" / "chatgate.tmol"
    result = chatgate("user", "list", "--config", str(typo))
    assert result.exit_code == 2
    assert str(typo) in result.stderr
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == ["chatgate.toml"]


def test_environment_naming_a_missing_file_exits_2(cwd: Path) -> None:
    result = chatgate("check", env={"CHATGATE_CONFIG": "gone.toml"})
    assert result.exit_code == 2
    assert "gone.toml does not exist" in result.stderr


def test_serve_in_a_folder_without_configuration_exits_2(cwd: Path) -> None:
    result = chatgate("serve")
    assert result.exit_code == 2, result.output
    assert f"no configuration: {cwd / 'chatgate.toml'} does not exist" in result.stderr
    assert "chatgate init" in result.stderr
    assert list(cwd.iterdir()) == []  # nothing started: no var/, no certificate


def test_a_folder_is_not_a_configuration(cwd: Path) -> None:
    (cwd / "conf.d").mkdir()
    result = chatgate("check", "--config", "conf.d")
    assert result.exit_code == 2
    assert "conf.d is not a file" in result.stderr


def test_init_is_the_command_that_creates_one(cwd: Path) -> None:
    assert chatgate("init").exit_code == 0
    assert (cwd / "chatgate.toml").is_file()
    result = chatgate("check")
    assert result.exit_code == 0, result.output
    assert "configuration OK" in result.stdout


def test_init_writes_the_configuration_private_whatever_the_umask(cwd: Path) -> None:
    # A configuration may hold a provider's password (LDAP bind, HTTP service).
    old = os.umask(0)
    try:
        assert chatgate("init").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((cwd / "chatgate.toml").stat().st_mode) == 0o600


# ---------------------------------------------------------------- item 18: version


def test_version_accepts_config_before_or_after(cwd: Path) -> None:
    for args in (["version", "--config", "x.toml"], ["--config", "x.toml", "version"]):
        result = chatgate(*args)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("chatgate ")
