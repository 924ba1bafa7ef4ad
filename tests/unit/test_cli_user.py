"""`chatgate user`: account management from the command line, against a real SQLite file."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chatgate.auth.internal import InternalProvider, stamp_path
from chatgate.cli.user import user_app
from chatgate.modules.legacy_auth import digest_value, zero_knowledge_chain
from chatgate.sasl.digest_md5 import digest_md5_ha1
from chatgate.storage.database import Database
from chatgate.storage.records import RosterItem
from chatgate.storage.repositories.legacy import LegacySecrets
from chatgate.storage.repositories.offline import OfflineQuota

from .cli_support import db_path, with_db

QUOTA = OfflineQuota(messages=10, bytes=1 << 20, sender_messages=10, sender_bytes=1 << 20)

CANARY = "Plaintext-Canary-7391"


BASE = """
[server]
domain = "localhost"
data_dir = "var"
[storage]
url = "sqlite+aiosqlite:///var/chatgate.db"
"""

#: every legacy secret on, a virtual host and an anonymous one
LEGACY = (
    BASE
    + """
[hosts."example.net"]
[hosts."guest.localhost"]
anonymous = true
[hosts."ext.localhost".provider]
name = "http"
http = { url = "http://127.0.0.1:9/check" }
[modules.legacy_auth]
digest = true
zero_knowledge = true
zero_knowledge_sequence = 50
digest_md5 = true
"""
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "chatgate.toml"
    path.write_text(BASE, encoding="utf-8")
    return path


@pytest.fixture
def legacy_config(tmp_path: Path) -> Path:
    path = tmp_path / "chatgate.toml"
    path.write_text(LEGACY, encoding="utf-8")
    return path


def cli(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(user_app, [*args, "--config", str(config)], input=input)


def password_ok(config: Path, username: str, password: str, domain: str = "localhost") -> bool:
    def check(db: Database) -> Awaitable[bool]:
        provider = InternalProvider(db.accounts, cache_size=10, data_dir=config.parent / "var")
        return provider.verify_password(username, domain, password)

    return with_db(config, check)


def secrets(config: Path, username: str, domain: str = "localhost") -> LegacySecrets | None:
    return with_db(config, lambda db: db.legacy.secrets((username, domain)))


def assert_secrets_of(stored: LegacySecrets | None, password: str, user: str, domain: str) -> None:
    """What in-band registration stores with every legacy option on: the digest
    secret, H(user:domain:password) and a fresh zero-knowledge chain of 50."""
    assert stored is not None
    assert stored.digest_password is not None
    assert digest_value("1234", stored.digest_password) == digest_value("1234", password)
    assert stored.digest_md5 is not None
    assert stored.digest_md5.realm == domain
    assert stored.digest_md5.ha1 == digest_md5_ha1(user, domain, password)
    chain = stored.zero_knowledge
    assert chain is not None and chain.sequence == 50
    assert chain == zero_knowledge_chain(password, chain.token, 50)


def rejected(out: str, line: int, reason: str) -> bool:
    """Whether `user import` listed line `line` of its file as rejected for `reason`."""
    return any(row.startswith(f"  line {line}: ") and reason in row for row in out.splitlines())


def add(config: Path, user: str, password: str) -> Result:
    return cli(config, "add", user, "--password-stdin", input=f"{password}\n")


def test_add_creates_an_account_the_provider_accepts(config: Path) -> None:
    result = add(config, "Alice", "s3cret pass")
    assert result.exit_code == 0, result.output
    assert "user alice@localhost created" in result.stdout
    assert password_ok(config, "alice", "s3cret pass")
    assert not password_ok(config, "alice", "s3cret")
    assert stamp_path(config.parent / "var").exists()


def test_add_asks_for_the_password_twice(config: Path) -> None:
    result = cli(config, "add", "bob", input="hunter22\nhunter22\n")
    assert result.exit_code == 0, result.output
    assert "hunter22" not in result.output  # hidden input is not echoed
    assert password_ok(config, "bob", "hunter22")


def test_add_with_mismatched_confirmation_creates_nothing(config: Path) -> None:
    result = cli(config, "add", "bob", input="one\ntwo\n")
    assert result.exit_code != 0
    assert with_db(config, lambda db: db.accounts.count()) == 0


def test_password_is_never_taken_from_argv(config: Path) -> None:
    result = cli(config, "add", "bob", "hunter22")
    assert result.exit_code == 2
    assert with_db(config, lambda db: db.accounts.count()) == 0


def test_duplicate_add_exits_1(config: Path) -> None:
    assert add(config, "alice", "password-one").exit_code == 0
    result = add(config, "alice@localhost", "password-two")
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert password_ok(config, "alice", "password-one")


def test_invalid_username_exits_2_with_the_reason(config: Path) -> None:
    result = add(config, "al ice", "pw")
    assert result.exit_code == 2
    assert "invalid username" in result.stderr and "spaces" in result.stderr


def test_foreign_domain_exits_2(config: Path) -> None:
    result = add(config, "alice@example.org", "pw")
    assert result.exit_code == 2
    assert "not served" in result.stderr


def test_empty_password_exits_2(config: Path) -> None:
    result = add(config, "alice", "")
    assert result.exit_code == 2
    assert "a password is required" in result.stderr


def test_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "chatgate.toml"
    path.write_text("[server]\nnope = 1\n", encoding="utf-8")
    result = cli(path, "list")
    assert result.exit_code == 2
    assert "server.nope" in result.stderr
    assert "Traceback" not in result.output


def test_passwd_replaces_the_password(config: Path) -> None:
    add(config, "alice", "old password")
    result = cli(config, "passwd", "alice", "--password-stdin", input="new password\n")
    assert result.exit_code == 0, result.output
    assert not password_ok(config, "alice", "old password")
    assert password_ok(config, "alice", "new password")


def test_passwd_of_unknown_user_exits_1(config: Path) -> None:
    result = cli(config, "passwd", "nobody", "--password-stdin", input="long enough\n")
    assert result.exit_code == 1
    assert "no such user" in result.stderr


def test_del_removes_the_account_and_its_roster_and_offline_messages(config: Path) -> None:
    add(config, "alice", "alice-password")
    add(config, "bob", "bob-password")

    async def populate(db: Database) -> None:
        for owner in (("alice", "localhost"), ("bob", "localhost")):
            await db.roster.put(owner, RosterItem("carol@example.org"))
            await db.offline.store(owner, "x@localhost", "<message/>", datetime.now(UTC), QUOTA)

    with_db(config, populate)
    result = cli(config, "del", "alice")
    assert result.exit_code == 0, result.output
    assert "user alice@localhost deleted" in result.stdout
    with sqlite3.connect(db_path(config)) as conn:
        for table in ("accounts", "roster_items", "offline_messages", "roster_versions"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,), table
    assert not password_ok(config, "alice", "alice-password")
    again = cli(config, "del", "alice")
    assert again.exit_code == 1
    assert "no such user" in again.stderr


def test_list_prints_bare_jids_by_domain(config: Path) -> None:
    add(config, "zed", "zed-password")
    add(config, "amy", "amy-password")
    with_db(config, lambda db: db.accounts.create("other", "example.org", {}))
    result = cli(config, "list")
    assert result.exit_code == 0
    assert result.stdout.split() == ["other@example.org", "amy@localhost", "zed@localhost"]
    result = cli(config, "list", "--domain", "localhost")
    assert result.stdout.split() == ["amy@localhost", "zed@localhost"]


MIXED = """\
# publish.password, Wowza style
alice   first-secret
bob second-pw

 # indented comment
carol
dave\t
bad/user password
erin \u0007bell-rings
al\u01c6 password
alice again-and-again
frank@localhost frankpw
grace@example.org password
bad user name x
admin admin-password
heidi short
"""


def test_import_rejects_every_bad_line_and_creates_nothing(config: Path, tmp_path: Path) -> None:
    add(config, "bob", "kept-password")
    file = tmp_path / "publish.password"
    file.write_text(MIXED, encoding="utf-8")
    result = cli(config, "import", str(file))
    assert result.exit_code == 2, result.output
    assert "11 lines rejected; nothing was imported" in result.stderr
    out = result.stdout
    for line, reason in [
        (6, "missing password"),
        (7, "missing password"),  # "dave" and a tab
        (8, "invalid username"),
        (9, "PRECIS"),
        (10, "invalid username"),
        (11, "duplicate of line 2"),
        (12, "at least 8 characters"),  # frankpw
        (13, "not served"),
        (14, "4 fields, expected exactly 'username password'"),
        (15, "not available"),  # reserved
        (16, "at least 8 characters"),
    ]:
        assert rejected(out, line, reason), (line, out)
    assert with_db(config, lambda db: db.accounts.count()) == 1  # bob, from before
    assert not password_ok(config, "alice", "first-secret")
    assert password_ok(config, "bob", "kept-password")


def test_import_never_splits_a_line_into_a_name_and_a_spaced_password(
    config: Path, tmp_path: Path
) -> None:
    """Issue 10 item 16: `bad user name x` used to create `bad` with password `user name x`."""
    file = tmp_path / "users.txt"
    file.write_text("good good-password\nbad user name x\n", encoding="utf-8")
    result = cli(config, "import", str(file))
    assert result.exit_code == 2
    assert rejected(result.stdout, 2, "bad: 4 fields, expected exactly 'username password'")
    assert "(a password with spaces needs the CSV format)" in result.stdout
    assert with_db(config, lambda db: db.accounts.count()) == 0


def test_import_csv_with_header_and_update_existing(config: Path, tmp_path: Path) -> None:
    add(config, "alice", "old-password")
    file = tmp_path / "accounts.csv"
    file.write_text(
        'username,password,domain\nalice,"new, with comma",\nbob,password2,localhost\n'
        ",nameless\nerin,\n",
        encoding="utf-8",
    )
    result = cli(config, "import", str(file), "--update-existing")
    assert result.exit_code == 2, result.output  # the nameless row and erin's
    assert "missing username" in result.stdout
    assert "missing password" in result.stdout
    assert password_ok(config, "alice", "old-password")
    assert not with_db(config, lambda db: db.accounts.exists("bob", "localhost"))
    file.write_text(
        'username,password,domain\nalice,"new, with comma",\nbob,password2,localhost\n',
        encoding="utf-8",
    )
    result = cli(config, "import", str(file), "--update-existing")
    assert result.exit_code == 0, result.output
    assert "│ created          │        1 │" in result.stdout
    assert "│ updated          │        1 │" in result.stdout
    assert "│ rejected         │        0 │" in result.stdout
    assert password_ok(config, "alice", "new, with comma")
    assert password_ok(config, "bob", "password2")


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('alice,"unterminated\n', 1, "not valid CSV"),
        ('alice,password1\nbob,"pass"word\n', 2, "not valid CSV"),
        ("alice,password1\nbob,password2,localhost,extra\n", 2, "4 fields, expected 2 or 3"),
        ("alice@localhost,password1,localhost\n", 1, "domain given twice"),
    ],
)
def test_import_rejects_malformed_csv_rows(
    config: Path, tmp_path: Path, text: str, line: int, reason: str
) -> None:
    file = tmp_path / "accounts.csv"
    file.write_text(text, encoding="utf-8")
    result = cli(config, "import", str(file))
    assert result.exit_code == 2, result.output
    assert rejected(result.stdout, line, reason), result.stdout
    assert with_db(config, lambda db: db.accounts.count()) == 0


def test_import_dry_run_shows_what_would_be_done_and_changes_nothing(
    config: Path, tmp_path: Path
) -> None:
    add(config, "bob", "kept-password")
    file = tmp_path / "users.txt"
    file.write_text("alice alice-password\nbob bob-password\ncarol carol-password\n")
    result = cli(config, "import", str(file), "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "would create: alice@localhost (line 1)" in out
    assert "would create: carol@localhost (line 3)" in out
    assert "would skip (exists): bob@localhost" in out
    assert "dry run: nothing was changed" in out
    assert "│ would create        │        2 │" in out
    assert with_db(config, lambda db: db.accounts.count()) == 1
    assert password_ok(config, "bob", "kept-password")
    updating = cli(config, "import", str(file), "--dry-run", "--update-existing")
    assert "would update: bob@localhost (line 2)" in updating.stdout
    assert password_ok(config, "bob", "kept-password")


def test_import_dry_run_lists_bad_lines_with_exit_2(config: Path, tmp_path: Path) -> None:
    file = tmp_path / "users.txt"
    file.write_text("alice alice-password\nbad user name x\n")
    result = cli(config, "import", str(file), "--dry-run")
    assert result.exit_code == 2
    assert "nothing was checked" not in result.stdout
    assert rejected(result.stdout, 2, "4 fields")
    assert with_db(config, lambda db: db.accounts.count()) == 0


def test_import_clean_file_exits_0_and_many_users(config: Path, tmp_path: Path) -> None:
    file = tmp_path / "users.txt"
    file.write_text("".join(f"user{i} password{i}\n" for i in range(60)), encoding="utf-8")
    result = cli(config, "import", str(file))
    assert result.exit_code == 0, result.output
    assert "│ created          │       60 │" in result.stdout
    assert with_db(config, lambda db: db.accounts.count()) == 60
    assert password_ok(config, "user59", "password59")
    again = cli(config, "import", str(file))
    assert "│ skipped (exists) │       60 │" in again.stdout


def test_no_column_of_any_table_holds_the_password(config: Path, tmp_path: Path) -> None:
    add(config, "alice", CANARY)
    cli(config, "passwd", "alice", "--password-stdin", input=f"{CANARY}-2\n")
    file = tmp_path / "users.txt"
    file.write_text(f"bob {CANARY}\ncarol {CANARY}-3\n", encoding="utf-8")
    assert cli(config, "import", str(file)).exit_code == 0
    needle = CANARY.encode("utf-8")
    checked = 0
    with sqlite3.connect(db_path(config)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            for row in conn.execute(f"SELECT * FROM {table}"):
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, str):
                        value = value.encode("utf-8")
                    if isinstance(value, bytes):
                        checked += 1
                        assert needle not in value, (table, column)
                        assert needle.lower() not in value.lower(), (table, column)
    assert checked > 0
    for path in db_path(config).parent.iterdir():  # the raw files too: db, -wal, stamp
        assert needle not in path.read_bytes(), path


# ---------------------------------------------------------------- legacy secrets, hosts


def test_add_stores_the_configured_legacy_secrets(legacy_config: Path) -> None:
    assert add(legacy_config, "Bill", "Calli0pe-pw").exit_code == 0
    assert_secrets_of(secrets(legacy_config, "bill"), "Calli0pe-pw", "bill", "localhost")
    assert password_ok(legacy_config, "bill", "Calli0pe-pw")


def test_add_without_legacy_options_stores_no_legacy_secret(config: Path) -> None:
    assert add(config, "bill", "Calli0pe-pw").exit_code == 0
    assert secrets(config, "bill") is None


def test_passwd_replaces_legacy_secrets_and_restarts_the_chain(legacy_config: Path) -> None:
    add(legacy_config, "bill", "Calli0pe-pw")
    before = secrets(legacy_config, "bill")
    assert before is not None and before.zero_knowledge is not None
    used = zero_knowledge_chain("Calli0pe-pw", before.zero_knowledge.token, 40)
    with_db(
        legacy_config,
        lambda db: db.legacy.advance_chain(("bill", "localhost"), before.zero_knowledge, used),
    )
    result = cli(legacy_config, "passwd", "bill", "--password-stdin", input="m1cro$oft\n")
    assert result.exit_code == 0, result.output
    after = secrets(legacy_config, "bill")
    assert_secrets_of(after, "m1cro$oft", "bill", "localhost")
    assert after is not None and after.zero_knowledge is not None
    assert after.zero_knowledge.token != before.zero_knowledge.token  # a fresh chain
    assert not password_ok(legacy_config, "bill", "Calli0pe-pw")


def test_add_on_a_virtual_host_binds_its_secrets_to_that_domain(legacy_config: Path) -> None:
    result = add(legacy_config, "ann@Example.NET", "ann-password")
    assert result.exit_code == 0, result.output
    assert "user ann@example.net created" in result.stdout
    assert password_ok(legacy_config, "ann", "ann-password", "example.net")
    assert not password_ok(legacy_config, "ann", "ann-password", "localhost")
    stored = secrets(legacy_config, "ann", "example.net")
    assert_secrets_of(stored, "ann-password", "ann", "example.net")


def test_anonymous_host_has_no_accounts_to_create(legacy_config: Path) -> None:
    result = add(legacy_config, "ann@guest.localhost", "ann-password")
    assert result.exit_code == 2
    assert "anonymous host" in result.stderr
    assert with_db(legacy_config, lambda db: db.accounts.count()) == 0


def test_a_host_with_an_outside_provider_keeps_no_accounts_here(legacy_config: Path) -> None:
    result = add(legacy_config, "ann@ext.localhost", "pw-for-ann")
    assert result.exit_code == 2
    assert "asks the http provider" in result.stderr
    assert with_db(legacy_config, lambda db: db.accounts.count()) == 0


def test_add_refuses_a_name_awaiting_approval(legacy_config: Path) -> None:
    with_db(
        legacy_config,
        lambda db: db.pending_registrations.create_pending(
            "bill", "localhost", {}, LegacySecrets(), {}
        ),
    )
    result = add(legacy_config, "bill", "bill-password")
    assert result.exit_code == 1
    assert "awaiting approval" in result.stderr


def test_add_refuses_a_name_an_invitation_reserves(legacy_config: Path) -> None:
    with_db(legacy_config, lambda db: db.invitations.add_invite("tok-j", "localhost", username="j"))
    result = add(legacy_config, "j", "j-password")
    assert result.exit_code == 1
    assert "reserved by an invitation" in result.stderr


def test_del_removes_legacy_secrets_and_fields(legacy_config: Path) -> None:
    add(legacy_config, "bill", "bill-password")
    with_db(
        legacy_config,
        lambda db: db.registration.set_fields(("bill", "localhost"), {"email": "b@x"}),
    )
    assert cli(legacy_config, "del", "bill").exit_code == 0
    with sqlite3.connect(db_path(legacy_config)) as conn:
        for table in ("accounts", "scram_credentials", "legacy_secrets", "registration_fields"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table


def test_del_drops_a_registration_awaiting_approval(legacy_config: Path) -> None:
    with_db(
        legacy_config,
        lambda db: db.pending_registrations.create_pending(
            "bill", "localhost", {}, LegacySecrets(), {}
        ),
    )
    result = cli(legacy_config, "del", "bill")
    assert result.exit_code == 0, result.output
    assert "pending registration of bill@localhost deleted" in result.stdout
    assert with_db(legacy_config, lambda db: db.pending_registrations.pending()) == []
    assert add(legacy_config, "bill", "bill-password").exit_code == 0  # the name is free


def test_import_stores_legacy_secrets(legacy_config: Path, tmp_path: Path) -> None:
    file = tmp_path / "users.txt"
    file.write_text("bill Calli0pe-pw\nann@example.net ann-password\n", encoding="utf-8")
    result = cli(legacy_config, "import", str(file))
    assert result.exit_code == 0, result.output
    assert "│ created          │        2 │" in result.stdout
    assert_secrets_of(secrets(legacy_config, "bill"), "Calli0pe-pw", "bill", "localhost")
    stored = secrets(legacy_config, "ann", "example.net")
    assert_secrets_of(stored, "ann-password", "ann", "example.net")


def test_import_rejects_an_anonymous_host_and_creates_nothing(
    legacy_config: Path, tmp_path: Path
) -> None:
    file = tmp_path / "users.txt"
    file.write_text("bill Calli0pe-pw\neve@guest.localhost eve-password\n", encoding="utf-8")
    result = cli(legacy_config, "import", str(file))
    assert result.exit_code == 2, result.output
    assert "anonymous host" in result.stdout
    assert with_db(legacy_config, lambda db: db.accounts.count()) == 0


def test_import_refuses_held_names_and_creates_nothing(legacy_config: Path, tmp_path: Path) -> None:
    with_db(
        legacy_config,
        lambda db: db.pending_registrations.create_pending(
            "waiting", "localhost", {}, LegacySecrets(), {}
        ),
    )
    with_db(legacy_config, lambda db: db.invitations.add_invite("tok-j", "localhost", username="j"))
    file = tmp_path / "users.txt"
    file.write_text("bill Calli0pe-pw\nwaiting waiting-password\nj j-password\n", encoding="utf-8")
    dry = cli(legacy_config, "import", str(file), "--dry-run")
    assert dry.exit_code == 1
    assert "would create: bill@localhost (line 1)" in dry.stdout
    result = cli(legacy_config, "import", str(file))
    assert result.exit_code == 1, result.output
    assert "2 names are held; nothing was imported" in result.stderr
    out = result.stdout
    assert rejected(out, 2, "waiting@localhost: held by a registration awaiting approval")
    assert rejected(out, 3, "j@localhost: reserved by an invitation")
    assert with_db(legacy_config, lambda db: db.accounts.count()) == 0


def test_import_update_existing_replaces_legacy_secrets(
    legacy_config: Path, tmp_path: Path
) -> None:
    add(legacy_config, "bill", "old-password")
    old = secrets(legacy_config, "bill")
    file = tmp_path / "users.txt"
    file.write_text("bill new-password\n", encoding="utf-8")
    result = cli(legacy_config, "import", str(file), "--update-existing")
    assert result.exit_code == 0, result.output
    new = secrets(legacy_config, "bill")
    assert_secrets_of(new, "new-password", "bill", "localhost")
    assert new != old
