"""One account policy (issue 10, item 17): `chatgate user add`, `passwd` and `import`
apply the rules in-band registration applies, with the values configured in
`[modules.register]`, and say which option they come from.  And `user del` asks
before deleting on a terminal (item 18)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chatgate.auth.policy import AccountPolicy, NameUnavailable, PolicyViolation
from chatgate.cli import user as user_cli
from chatgate.cli.user import user_app
from chatgate.modules.register import RegisterOptions, RegistrationPolicy
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition

from .cli_support import with_db

BASE = """
[server]
domain = "localhost"
data_dir = "var"
[storage]
url = "sqlite+aiosqlite:///var/chatgate.db"
"""
CONFIGURED = (
    BASE
    + """
[modules.register]
min_password_length = 12
min_username_length = 3
max_username_length = 10
reserved_usernames = ["boss"]
"""
)


def configure(tmp_path: Path, text: str = BASE) -> Path:
    path = tmp_path / "chatgate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def cli(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(user_app, [*args, "--config", str(config)], input=input)


def add(config: Path, user: str, password: str, *more: str) -> Result:
    return cli(config, "add", user, "--password-stdin", *more, input=f"{password}\n")


def count(config: Path) -> int:
    return with_db(config, lambda db: db.accounts.count())


# ---------------------------------------------------------------- the defaults


def test_add_refuses_a_one_character_password(tmp_path: Path) -> None:
    config = configure(tmp_path)
    result = add(config, "alice", "x")
    assert result.exit_code == 2
    assert "passwords have at least 8 characters" in result.stderr
    assert "min_password_length" in result.stderr
    assert count(config) == 0


def test_add_refuses_a_reserved_name_unless_told(tmp_path: Path) -> None:
    config = configure(tmp_path)
    result = add(config, "Admin", "admin-password")
    assert result.exit_code == 2
    assert "admin@localhost: this username is not available: the name is reserved" in (
        result.stderr
    )
    assert "--allow-reserved" in result.stderr
    assert count(config) == 0
    result = add(config, "Admin", "admin-password", "--allow-reserved")
    assert result.exit_code == 0, result.output
    assert "user admin@localhost created" in result.stdout


def test_passwd_refuses_a_short_password_and_keeps_the_old_one(tmp_path: Path) -> None:
    config = configure(tmp_path)
    assert add(config, "alice", "alice-password").exit_code == 0
    result = cli(config, "passwd", "alice", "--password-stdin", input="short\n")
    assert result.exit_code == 2
    assert "passwords have at least 8 characters" in result.stderr


def test_prompted_password_is_checked_too(tmp_path: Path) -> None:
    config = configure(tmp_path)
    result = cli(config, "add", "alice", input="tiny\ntiny\n")
    assert result.exit_code == 2
    assert "at least 8 characters" in result.stderr
    assert count(config) == 0


# ---------------------------------------------------------------- configured values


def test_the_configured_values_apply_to_every_command(tmp_path: Path) -> None:
    config = configure(tmp_path, CONFIGURED)
    assert "at least 12 characters" in add(config, "alice", "eleven-char").stderr
    assert "3 to 10 characters" in add(config, "al", "long-enough-password").stderr
    assert "3 to 10 characters" in add(config, "alexandrina", "long-enough-password").stderr
    assert "reserved" in add(config, "boss", "long-enough-password").stderr
    # The configured list replaces the default one: admin is an ordinary name here.
    assert add(config, "admin", "long-enough-password").exit_code == 0
    assert add(config, "alice", "twelve-chars").exit_code == 0
    result = cli(config, "passwd", "alice", "--password-stdin", input="eleven-char\n")
    assert "at least 12 characters" in result.stderr
    file = tmp_path / "users.txt"
    file.write_text("bob eleven-char\nboss long-enough-password\ncarol twelve-chars\n")
    result = cli(config, "import", str(file))
    assert result.exit_code == 2
    assert "  line 1: bob: passwords have at least 12 characters" in result.stdout
    assert "  line 2: boss: this username is not available" in result.stdout
    assert count(config) == 2  # admin and alice, from before


def test_invalid_policy_options_exit_2_naming_them(tmp_path: Path) -> None:
    config = configure(tmp_path, BASE + "[modules.register]\nmin_password_length = 0\n")
    result = add(config, "alice", "alice-password")
    assert result.exit_code == 2
    assert "modules.register.min_password_length" in result.stderr


# ---------------------------------------------------------------- one policy


CASES = [
    ("alice", "short"),
    ("alice", ""),
    ("alice", "bell\u0007-password"),
    ("admin", "admin-password"),
    ("alice", "long-enough"),
]


@pytest.mark.parametrize(("name", "password"), CASES)
def test_registration_and_the_command_line_give_the_same_verdict(
    tmp_path: Path, name: str, password: str
) -> None:
    """Registration's refusal (its text) is the command line's, for the same input."""
    registration = RegistrationPolicy(RegisterOptions())
    try:
        registration.username(name)
        registration.password(password)
        expected = None
    except StanzaError as exc:
        expected = exc.text
    result = add(configure(tmp_path), name, password)
    if expected is None:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2
        assert expected and expected in result.stderr


def test_the_policy_is_one_object_shared_by_both() -> None:
    options = RegisterOptions(min_password_length=10, reserved_usernames=["Boss"])
    policy = options.account_policy()
    assert policy == AccountPolicy(min_password_length=10, reserved_usernames=frozenset({"boss"}))
    assert RegistrationPolicy(options).accounts == policy
    with pytest.raises(NameUnavailable):
        policy.username("BOSS")
    assert policy.username("BOSS", allow_reserved=True) == "boss"
    with pytest.raises(PolicyViolation, match="at least 10"):
        policy.password("nine-char")
    with pytest.raises(StanzaError) as caught:
        RegistrationPolicy(options).username("boss")
    assert caught.value.condition is StanzaErrorCondition.CONFLICT


# ---------------------------------------------------------------- user del on a terminal


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user_cli, "on_a_terminal", lambda: True)


def test_del_on_a_terminal_asks_and_no_keeps_the_account(tmp_path: Path, terminal: None) -> None:
    config = configure(tmp_path)
    add(config, "alice", "alice-password")
    result = cli(config, "del", "alice", input="n\n")
    assert result.exit_code == 1
    assert "Delete the account alice@localhost" in result.stderr
    assert "alice@localhost not deleted" in result.stderr
    assert count(config) == 1


def test_del_on_a_terminal_deletes_after_yes(tmp_path: Path, terminal: None) -> None:
    config = configure(tmp_path)
    add(config, "alice", "alice-password")
    result = cli(config, "del", "alice", input="y\n")
    assert result.exit_code == 0, result.output
    assert "user alice@localhost deleted" in result.stdout
    assert count(config) == 0


def test_del_with_yes_does_not_ask(tmp_path: Path, terminal: None) -> None:
    config = configure(tmp_path)
    add(config, "alice", "alice-password")
    result = cli(config, "del", "alice", "--yes")
    assert result.exit_code == 0, result.output
    assert "Delete" not in result.output
    assert count(config) == 0


def test_del_of_nobody_on_a_terminal_asks_nothing(tmp_path: Path, terminal: None) -> None:
    result = cli(configure(tmp_path), "del", "nobody")
    assert result.exit_code == 1
    assert "no such user nobody@localhost" in result.stderr
    assert "Delete" not in result.output


def test_del_without_a_terminal_deletes_at_once(tmp_path: Path) -> None:
    # CliRunner's standard input is no terminal: a script keeps working unchanged.
    config = configure(tmp_path)
    add(config, "alice", "alice-password")
    result = cli(config, "del", "alice")
    assert result.exit_code == 0, result.output
    assert count(config) == 0
