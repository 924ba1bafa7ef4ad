"""The backup and restore of docs/operations.md, run as written, restore a working server.

A server runs with two accounts and offline messages; the page's backup
commands copy it while it serves; the page's restore commands put the copy into
a fresh data directory; a second server started there lets both users log in
with slixmpp, delivers the offline messages, presents the same certificate and
keeps the same installation secrets.  The commands are read from the page
(tests/docblocks.py), with only its example paths replaced by this test's.
"""

from __future__ import annotations

import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
from slixmpp import JID

from tests.docblocks import shell_block

from .conftest import AuthenticationFailed, connect, logged_in, start_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sqlite3") is None, reason="the sqlite3 command is missing"),
]

PAGE = "docs/operations.md"
#: the page's example paths
DOC_DATA = "/var/lib/chatgate"
DOC_BACKUP = "/var/backups/chatgate"
DOC_CONFIG = "/etc/chatgate/chatgate.toml"
MESSAGES = ("while you were away", "a second one", "and a third")


def run_documented(name: str, paths: dict[str, Path]) -> str:
    """Run the page's block `name` with bash -e, its example paths replaced; its output."""
    script = shell_block(PAGE, name).text
    for documented, real in paths.items():
        assert documented in script, f"{name} no longer uses {documented}"
        script = script.replace(documented, str(real))
    done = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{name}:\n{script}\n{done.stderr}"
    return done.stdout


def rows(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(query).fetchall()


SECRETS = "SELECT name, value FROM installation_secrets ORDER BY name"
OFFLINE = "SELECT count(*) FROM offline_messages"
ACCOUNTS = "SELECT username, domain FROM accounts ORDER BY username"


async def test_a_backup_taken_while_serving_restores_a_working_server(tmp_path: Path) -> None:
    (tmp_path / "live").mkdir()
    live = start_server(tmp_path / "live")
    backup, compact = tmp_path / "backup", tmp_path / "compact"
    try:
        live.add_user("alice", "alice-password-1")
        live.add_user("bob", "bob-password-22")
        async with logged_in(live, "alice@localhost/desk", "alice-password-1") as alice:
            for body in MESSAGES:
                alice.send_message(mto=JID("bob@localhost"), mbody=body, mtype="chat")
            # A ping round trip makes sure the server has processed the messages.
            await alice.plugin["xep_0199"].ping(jid=JID("localhost"), timeout=5)
        # While the server runs (and alice has just written to the database).
        assert live.process.poll() is None
        output = run_documented(
            "backup", {DOC_DATA: live.data_dir, DOC_BACKUP: backup, DOC_CONFIG: live.config}
        )
        assert output.strip() == "ok"  # PRAGMA integrity_check
        run_documented("backup-vacuum", {DOC_DATA: live.data_dir, DOC_BACKUP: compact})
        assert live.process.poll() is None
    finally:
        code = live.stop()
    assert code == 0, live.log_text()

    # The copies are private, complete and alike.
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    for db in (backup / "chatgate.db", compact / "chatgate.db"):
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        assert rows(db, OFFLINE) == [(len(MESSAGES),)]
        assert rows(db, ACCOUNTS) == [("alice", "localhost"), ("bob", "localhost")]
        assert rows(db, SECRETS) == rows(live.data_dir / "chatgate.db", SECRETS) != []
    assert (backup / "chatgate.toml").read_text() == live.config.read_text()

    # Restored into a fresh data directory; a server started there.
    fresh = tmp_path / "restored"
    fresh.mkdir()
    run_documented("restore", {DOC_DATA: fresh / "var", DOC_BACKUP: backup})
    assert stat.S_IMODE((fresh / "var").stat().st_mode) == 0o700
    restored = start_server(fresh)
    try:
        assert restored.data_dir == fresh / "var"
        assert restored.certificate.read_bytes() == live.certificate.read_bytes()
        async with logged_in(restored, "bob@localhost/phone", "bob-password-22") as bob:
            got = [await bob.next_message() for _ in MESSAGES]
            assert [m["body"] for m in got] == list(MESSAGES)
            assert {str(m["from"]) for m in got} == {"alice@localhost/desk"}
            assert all(m["delay"]["stamp"] is not None for m in got)
        async with logged_in(restored, "alice@localhost/desk", "alice-password-1"):
            pass
        with pytest.raises(AuthenticationFailed):
            await connect(restored, "alice@localhost/desk", "not-her-password")
    finally:
        code = restored.stop()
    assert code == 0, restored.log_text()
    assert "Traceback" not in restored.log_text(), restored.log_text()
    # The installation secrets came back with the database: none was made anew.
    assert rows(fresh / "var" / "chatgate.db", SECRETS) == rows(backup / "chatgate.db", SECRETS)
