"""`chatgate streams`: rules, stream keys, tokens and the live list from the command
line, against a real SQLite file and the stores a running server reads."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from chatgate.cli import app
from chatgate.cli import streams as streams_cli
from chatgate.storage.database import Database
from chatgate.storage.repositories.legacy import LegacySecrets
from chatgate.streams import tokens
from chatgate.streams.live import Publication, Session, Viewing
from chatgate.streams.state import StreamState, open_stream_state
from chatgate.streams.tokens import TokenReason, TokenVerdict

from .cli_support import with_db

T = TypeVar("T")

CONFIG = """
[server]
domain = "localhost"
data_dir = "var"
[storage]
url = "sqlite+aiosqlite:///var/chatgate.db"
[hosts."example.net"]
[streams]
enabled = true
rules = ["play public/* anonymous", "publish,play staff/* group:staff"]
"""

CANARY = "Wowza-Canary-pw-7731"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "chatgate.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def cli(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, ["streams", *args, "--config", str(config)], input=input)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def with_state(config: Path, work: Callable[[Database, StreamState], Awaitable[T]]) -> T:
    """Run `work` on the stores a server on this configuration opens."""

    async def run(db: Database) -> T:
        return await work(db, await open_stream_state(db, config.parent / "var"))

    return with_db(config, run)


def make_accounts(config: Path, *names: str, domain: str = "localhost") -> None:
    """Accounts as registration stores them (no password needed here)."""

    async def create(db: Database) -> None:
        for name in names:
            await db.registration.create_account(name, domain, {}, LegacySecrets(), {})

    with_db(config, create)


def stored_rules(config: Path) -> list[str]:
    return with_state(config, lambda db, state: state.rules.rules())


def stamp(config: Path) -> tuple[int, int] | None:
    """The change signal's stamp file (what a running server watches)."""
    try:
        st = os.stat(config.parent / "var" / "streams.stamp")
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


# ------------------------------------------------------------------ rules


def test_rules_add_list_remove(config: Path) -> None:
    result = ok(cli(config, "rules", "list"))
    assert re.search(r"play public/\* anonymous\s+.*chatgate\.toml", result.stdout)
    assert stored_rules(config) == []

    before = stamp(config)
    result = ok(cli(config, "rules", "add", "play,publish live/* user:Alice@LOCALHOST"))
    assert "rule added: publish,play live/* user:alice@localhost" in result.stdout
    assert stored_rules(config) == ["publish,play live/* user:alice@localhost"]
    assert stamp(config) != before

    # words instead of one argument; another spelling of a stored rule is the same rule
    ok(cli(config, "rules", "add", "play", "cams/*", "token"))
    again = cli(config, "rules", "add", "publish,play  live/*  user:alice@localhost")
    assert again.exit_code == 1
    assert "already stored" in again.output
    configured = cli(config, "rules", "add", "play public/* anonymous")
    assert configured.exit_code == 1
    assert "already configured in chatgate.toml" in configured.output

    listing = ok(cli(config, "rules", "list")).stdout
    assert re.search(r"publish,play live/\* user:alice@localhost\s+.*stored", listing)
    assert re.search(r"play cams/\* token\s+.*stored", listing)
    assert listing.index("public/*") < listing.index("live/*")  # configured first

    before = stamp(config)
    removed = ok(cli(config, "rules", "remove", "play,publish live/* user:alice@localhost"))
    assert "rule removed: publish,play live/* user:alice@localhost" in removed.stdout
    assert stored_rules(config) == ["play cams/* token"]
    assert stamp(config) != before
    missing = cli(config, "rules", "remove", "play live/* user:alice@localhost")
    assert missing.exit_code == 1 and "no stored rule" in missing.output


def test_a_configured_rule_is_removed_by_editing_the_file(config: Path) -> None:
    result = cli(config, "rules", "remove", "play public/* anonymous")
    assert result.exit_code == 1
    assert "edit chatgate.toml" in result.output


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ("publish live/*", "ACTIONS PATTERN GRANTEE"),
        ("pub live/* token", "actions are 'publish' and 'play'"),
        ("publish live/al* token", "character '*' not allowed"),
        ("publish live/../x token", "segment starts with '.'"),
        ("publish live/* grp:staff", "a grantee is user:JID, group:NAME"),
        ("publish live/* user:a@b/c", "user grantee must be localpart@domain"),
    ],
)
def test_an_invalid_rule_is_refused_with_the_reason(config: Path, rule: str, reason: str) -> None:
    result = cli(config, "rules", "add", rule)
    assert result.exit_code == 2
    assert reason in " ".join(result.output.split())
    assert stored_rules(config) == []


def test_rules_export_and_import_round_trip(config: Path, tmp_path: Path) -> None:
    ok(cli(config, "rules", "add", "publish live/alice user:alice@localhost"))
    ok(cli(config, "rules", "add", "play staff/* token"))
    exported = tmp_path / "rules.txt"
    ok(cli(config, "rules", "export", str(exported)))
    text = exported.read_text(encoding="utf-8")
    assert text.startswith("# chatgate stream rules")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "play public/* anonymous",
        "publish,play staff/* group:staff",
        "publish live/alice user:alice@localhost",
        "play staff/* token",
    ]
    # to standard output, the same rules
    stdout = ok(cli(config, "rules", "export")).stdout
    assert [line for line in stdout.splitlines() if line and not line.startswith("#")] == lines

    # into a fresh installation: every rule is stored (the file names no source)
    other = tmp_path / "other"
    other.mkdir()
    (other / "chatgate.toml").write_text(CONFIG, encoding="utf-8")
    result = ok(cli(other / "chatgate.toml", "rules", "import", str(exported)))
    assert re.search(r"added\s+.*\b2\b", result.stdout)
    assert re.search(r"already present \(chatgate\.toml\)\s+.*\b2\b", result.stdout)
    assert stored_rules(other / "chatgate.toml") == lines[2:]
    # and again: nothing new
    result = ok(cli(other / "chatgate.toml", "rules", "import", str(exported)))
    assert re.search(r"added\s+.*\b0\b", result.stdout)
    assert re.search(r"already present \(stored\)\s+.*\b2\b", result.stdout)
    assert stored_rules(other / "chatgate.toml") == lines[2:]


def test_rules_import_stores_nothing_when_a_line_is_invalid(config: Path, tmp_path: Path) -> None:
    file = tmp_path / "rules.txt"
    file.write_text(
        "# header\n\nplay ok/* token\npublish bad/x* token\n  # indented comment\nplay x\n",
        encoding="utf-8",
    )
    result = cli(config, "rules", "import", str(file))
    assert result.exit_code == 2
    assert "line 4: a pattern is a stream name" in result.stdout
    assert "line 6: a rule is 'ACTIONS PATTERN GRANTEE'" in result.stdout
    assert "line 3" not in result.stdout
    assert "no rule was imported" in result.output
    assert stored_rules(config) == []


def test_rules_import_reads_standard_input(config: Path) -> None:
    result = ok(cli(config, "rules", "import", "-", input="play a/* token\nplay a/* token\n"))
    assert re.search(r"repeated in the file\s+.*\b1\b", result.stdout)
    assert stored_rules(config) == ["play a/* token"]


# ------------------------------------------------------------------ keys


def test_keys_issue_list_revoke(config: Path) -> None:
    make_accounts(config, "alice", "bob")
    before = stamp(config)
    result = ok(cli(config, "keys", "issue", "Alice"))
    key = result.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", key)
    assert stamp(config) != before
    owner = with_state(config, lambda db, state: state.keys.owner(key))
    assert owner is not None and owner.account == "alice@localhost"

    listing = ok(cli(config, "keys", "list")).stdout
    assert "alice@localhost" in listing and owner.key_id in listing
    assert key not in listing
    assert "bob@localhost" not in listing

    # a second key replaces the first
    second = ok(cli(config, "keys", "issue", "alice@localhost")).stdout.strip()
    assert second != key
    assert with_state(config, lambda db, state: state.keys.owner(key)) is None
    assert with_state(config, lambda db, state: state.keys.key_of("alice@localhost")) == second

    before = stamp(config)
    revoked = ok(cli(config, "keys", "revoke", "alice"))
    assert "revoked" in revoked.stdout
    assert stamp(config) != before
    assert with_state(config, lambda db, state: state.keys.owner(second)) is None
    assert ok(cli(config, "keys", "list")).stdout.strip() == "no stream keys"
    again = cli(config, "keys", "revoke", "alice")
    assert again.exit_code == 1 and "has no stream key" in again.output


def test_keys_issue_needs_an_existing_account(config: Path) -> None:
    result = cli(config, "keys", "issue", "nobody")
    assert result.exit_code == 1
    assert "no such user nobody@localhost" in result.output
    bad = cli(config, "keys", "issue", "a b")
    assert bad.exit_code == 2
    elsewhere = cli(config, "keys", "issue", "alice@elsewhere.example")
    assert elsewhere.exit_code == 2 and "not served here" in elsewhere.output


def test_keys_on_another_served_domain(config: Path) -> None:
    make_accounts(config, "carol", domain="example.net")
    key = ok(cli(config, "keys", "issue", "carol@example.net")).stdout.strip()
    owner = with_state(config, lambda db, state: state.keys.owner(key))
    assert owner is not None and owner.account == "carol@example.net"


WOWZA_FILE = f"""\
# Publish password file (format [username][space][password])
#username password

alice\t{CANARY}
Bob   bobs-password-1
  # an indented comment
nobody some-password-2
carol onlyonefield-and-more extra
dave
erin short
bob another-password
frank {CANARY}
bad\u00a0name pw-x-long-enough
"""


def test_import_wowza_mixed_file(config: Path, tmp_path: Path) -> None:
    make_accounts(config, "alice", "bob", "carol", "dave", "erin", "frank")
    file = tmp_path / "publish.password"
    file.write_text(WOWZA_FILE, encoding="utf-8")
    result = cli(config, "keys", "import-wowza", str(file))
    assert result.exit_code == 2, result.output  # invalid lines
    out = result.stdout
    assert re.search(r"imported\s+.*\b2\b", out)
    assert re.search(r"skipped \(no such account\)\s+.*\b1\b", out)
    assert re.search(r"invalid\s+.*\b6\b", out)
    assert "line 7: nobody: no such account nobody@localhost" in out
    for line in (8, 9, 10, 11, 12, 13):
        assert f"  line {line}: " in out, line
    assert "line 11: bob@localhost is also on line 5" in out
    assert "line 12: the same password as line 4" in out
    assert "line 10: erin@localhost: a stream key is 6 to 128" in out
    for secret in (CANARY, "bobs-password-1", "some-password-2", "extra", "short"):
        assert secret not in result.output

    keys = with_state(
        config,
        lambda db, state: _keys_of(state, ["alice", "bob", "carol", "erin", "frank"]),
    )
    assert keys == {
        "alice": CANARY,
        "bob": "bobs-password-1",
        "carol": None,
        "erin": None,
        "frank": None,
    }
    assert with_state(config, lambda db, state: state.keys.owner(CANARY)) is not None


async def _keys_of(state: StreamState, names: list[str]) -> dict[str, str | None]:
    return {name: await state.keys.key_of(f"{name}@localhost") for name in names}


def test_import_wowza_of_the_seed_file(config: Path, tmp_path: Path) -> None:
    make_accounts(config, "testuser")
    file = tmp_path / "publish.password"
    file.write_text(
        "# Publish password file (format [username][space][password])\n"
        "#username password\n\ntestuser 123456\n",  # the seed's own line, as it is
        encoding="utf-8",
    )
    result = ok(cli(config, "keys", "import-wowza", str(file)))
    assert re.search(r"imported\s+.*\b1\b", result.stdout)
    assert "123456" not in result.output
    assert "fewer than 12 characters (lines 4)" in " ".join(result.stderr.split())
    key = with_state(config, lambda db, state: state.keys.key_of("testuser@localhost"))
    assert key == "123456"


def test_import_wowza_replaces_keys_and_exits_1_for_unknown_users(
    config: Path, tmp_path: Path
) -> None:
    make_accounts(config, "alice")
    ok(cli(config, "keys", "issue", "alice"))
    file = tmp_path / "publish.password"
    file.write_text("alice new-password-1\nghost ghost-password\n", encoding="utf-8")
    before = stamp(config)
    result = cli(config, "keys", "import-wowza", str(file))
    assert result.exit_code == 1, result.output
    assert re.search(r"of which replaced a key\s+.*\b1\b", result.stdout)
    assert stamp(config) != before
    key = with_state(config, lambda db, state: state.keys.key_of("alice@localhost"))
    assert key == "new-password-1"


def test_import_wowza_refuses_another_accounts_key(config: Path, tmp_path: Path) -> None:
    make_accounts(config, "alice", "bob")
    key = ok(cli(config, "keys", "issue", "alice")).stdout.strip()
    file = tmp_path / "publish.password"
    file.write_text(f"bob {key}\n", encoding="utf-8")
    result = cli(config, "keys", "import-wowza", str(file))
    assert result.exit_code == 2, result.output
    assert "line 1: bob@localhost: this stream key is another account's" in result.stdout
    assert key not in result.output
    assert with_state(config, lambda db, state: state.keys.key_of("bob@localhost")) is None
    owner = with_state(config, lambda db, state: state.keys.owner(key))
    assert owner is not None and owner.account == "alice@localhost"


def test_import_wowza_large_file(config: Path, tmp_path: Path) -> None:
    names = [f"user{i:03d}" for i in range(150)]
    make_accounts(config, *names)
    file = tmp_path / "publish.password"
    file.write_text("".join(f"{n}\tpassword-{n}\n" for n in names), encoding="utf-8")
    result = ok(cli(config, "keys", "import-wowza", str(file)))
    assert re.search(r"imported\s+.*\b150\b", result.stdout)
    listing = with_state(config, lambda db, state: state.keys.listing())
    assert len(listing) == 150
    assert with_state(config, lambda db, state: state.keys.key_of("user149@localhost")) == (
        "password-user149"
    )


def test_import_wowza_unreadable_file(config: Path, tmp_path: Path) -> None:
    file = tmp_path / "publish.password"
    file.write_bytes(b"alice \xff\xfe\n")
    result = cli(config, "keys", "import-wowza", str(file))
    assert result.exit_code == 2 and "cannot read" in result.output
    missing = cli(config, "keys", "import-wowza", str(tmp_path / "nope"))
    assert missing.exit_code == 2


# ------------------------------------------------------------------ tokens


def _verify(
    config: Path, token: str, stream: str, action: str, address: str | None = None
) -> TokenVerdict:
    keys = with_state(config, lambda db, state: _token_keys(state))
    return tokens.verify(
        token, keys, stream=stream, action=action, now=time.time(), address=address
    )


async def _token_keys(state: StreamState) -> dict[int, bytes]:
    return dict(state.token_keys)


def test_tokens_issue_verifies_for_its_stream_and_action_only(config: Path) -> None:
    result = ok(cli(config, "tokens", "issue", "staff/meeting", "--action", "play"))
    token = result.stdout.strip()
    verdict = _verify(config, token, "staff/meeting", "play")
    assert verdict.reason is TokenReason.VALID
    assert verdict.expires_at is not None
    assert 3590 <= verdict.expires_at - time.time() <= 3601  # the default, 1h
    assert not verdict.one_time
    assert _verify(config, token, "staff/other", "play").reason is TokenReason.WRONG_STREAM
    assert _verify(config, token, "staff/meeting", "publish").reason is TokenReason.WRONG_ACTION
    # no rule grants 'token' on staff/*: the operator is told
    assert "no rule honours tokens" in result.stderr


def test_tokens_issue_with_url_address_user_one_time(config: Path) -> None:
    make_accounts(config, "alice")
    ok(cli(config, "rules", "add", "publish live/* token"))
    result = ok(
        cli(
            config,
            "tokens",
            "issue",
            "live/alice",
            "--action",
            "publish",
            "--ttl",
            "90s",
            "--address",
            "192.0.2.7",
            "--user",
            "Alice",
            "--one-time",
            "--url-base",
            "rtmp://media.example:1935/",
        )
    )
    token, url = result.stdout.split()
    assert url == f"rtmp://media.example:1935/live/alice?token={token}"
    verdict = _verify(config, token, "live/alice", "publish", "192.0.2.7")
    assert verdict.reason is TokenReason.VALID
    assert verdict.user == "alice@localhost"
    assert verdict.one_time
    assert verdict.expires_at is not None and verdict.expires_at - time.time() <= 91
    other = _verify(config, token, "live/alice", "publish", "192.0.2.8")
    assert other.reason is TokenReason.WRONG_ADDRESS
    assert "no rule honours tokens" not in result.stderr


def test_tokens_issue_url_base_without_trailing_slash(config: Path) -> None:
    result = ok(cli(config, "tokens", "issue", "cam1", "-a", "play", "--url-base", "rtsp://h:8554"))
    token, url = result.stdout.split()
    assert url == f"rtsp://h:8554/cam1?token={token}"


@pytest.mark.parametrize(
    ("ttl", "reason"),
    [
        ("31d", "longer than the most, 30d"),
        ("0s", "longer than zero"),
        ("abc", "invalid duration"),
        ("10x", "invalid duration"),
        ("-5m", "invalid duration"),
    ],
)
def test_tokens_issue_refuses_bad_ttls(config: Path, ttl: str, reason: str) -> None:
    result = cli(config, "tokens", "issue", "live/a", "--action", "play", "--ttl", ttl)
    assert result.exit_code == 2
    assert reason in " ".join(result.output.split())


def test_tokens_issue_accepts_the_longest_ttl(config: Path) -> None:
    for ttl, seconds in (("15m", 900), ("2h", 7200), ("7d", 7 * 86400), ("30d", 30 * 86400)):
        token = ok(cli(config, "tokens", "issue", "a/b", "-a", "play", "--ttl", ttl)).stdout
        verdict = _verify(config, token.strip(), "a/b", "play")
        assert verdict.expires_at is not None
        assert seconds - 5 <= verdict.expires_at - time.time() <= seconds + 1


@pytest.mark.parametrize(
    ("args", "code", "reason"),
    [
        (["live/../x", "-a", "play"], 2, "invalid stream name"),
        (["live/a", "-a", "record"], 2, "record"),
        (["live/a", "-a", "play", "--address", "not-an-ip"], 2, "not-an-ip"),
        (["live/a", "-a", "play", "--user", "ghost"], 1, "no such user ghost@localhost"),
        (["live/a", "-a", "play", "--url-base", "host/app"], 2, "--url-base must be"),
    ],
)
def test_tokens_issue_refuses_bad_input(
    config: Path, args: list[str], code: int, reason: str
) -> None:
    result = cli(config, "tokens", "issue", *args)
    assert result.exit_code == code, result.output
    assert reason in result.output


# ------------------------------------------------------------------ live


def test_live_lists_the_saved_snapshot(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A terminal wide enough for one row per stream (80 columns fold the names).
    monkeypatch.setattr(streams_cli, "console", Console(width=160, highlight=False, markup=False))
    assert ok(cli(config, "live")).stdout.strip() == "no live streams"
    now = time.time()
    sessions: list[Session] = [
        Publication("live/alice", "alice@localhost", "17", "nginx-1", now - 60, now),
        Publication("live/bob", None, "9", "srs-a", now - 5, now - 5, confirmed=False),
        Viewing("live/alice", None, "20", "nginx-1", now - 30, now),
        Viewing("live/alice", "carol@localhost", "21", "nginx-1", now - 20, now, confirmed=False),
        Viewing("live/zed", None, "30", "nginx-1", now, now),
    ]
    with_state(config, lambda db, state: state.snapshot.save(sessions))
    out = ok(cli(config, "live")).stdout
    alice = next(line for line in out.splitlines() if "live/alice" in line)
    assert re.search(r"alice@localhost\s+17\s+nginx-1\s+\d{4}-\d\d-\d\d [\d:]+\s+2\s+yes", alice)
    assert "1 of the viewers are not confirmed yet" in out
    bob = next(line for line in out.splitlines() if "live/bob" in line)
    assert re.search(r"live/bob\s+-\s+9\s+srs-a\s+\S+ \S+\s+0\s+no", bob)
    assert "live/zed" not in out  # no publisher


def test_tokens_revoke_records_the_token_until_it_expires(config: Path) -> None:
    token = ok(cli(config, "tokens", "issue", "staff/meeting", "--action", "play")).stdout.strip()
    before = stamp(config)
    result = ok(cli(config, "tokens", "revoke", token))
    assert "revoked" in result.stdout and stamp(config) != before
    assert "revoked already" in ok(cli(config, "tokens", "revoke", token)).stdout
    token_id = tokens.identify(token, with_state(config, _state_token_keys)).token_id
    assert with_state(config, lambda db, state: state.revoked.is_revoked(token_id or ""))
    # a token this installation never issued (or damaged) is refused, with the reason
    damaged = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    refused = cli(config, "tokens", "revoke", damaged)
    assert refused.exit_code == 2 and "not a token of this installation" in refused.output
    assert cli(config, "tokens", "revoke", "nonsense").exit_code == 2


async def _state_token_keys(db: Database, state: StreamState) -> dict[int, bytes]:
    return state.token_keys
