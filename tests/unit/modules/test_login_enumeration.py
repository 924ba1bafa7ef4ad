"""A login attempt must not reveal whether its username exists: not by its answer,
and not by its timing.  A warm credential cache holding every account answers an
unknown username from memory, exactly as it answers a known one."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from .wire import Server

_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def _client_first(user: str) -> str:
    data = base64.b64encode(f"n,,n={user},r=abcdefghijklmnop".encode()).decode()
    return f"<auth xmlns='{_SASL}' mechanism='SCRAM-SHA-256'>{data}</auth>"


def _server_first(reply: str) -> dict[str, str]:
    match = re.search(r"<challenge[^>]*>([^<]+)</challenge>", reply)
    assert match, reply
    text = base64.b64decode(match.group(1)).decode()
    return dict(part.split("=", 1) for part in text.split(","))


async def test_known_and_unknown_usernames_are_answered_from_memory_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = await Server.start(tmp_path, {})
    try:
        await srv.add_user("alice", "secret-pw-1")
        await srv.ctx.provider.warm()  # what the server does at start

        async def no_database(*_args: object) -> None:
            raise AssertionError("a login read the database")

        monkeypatch.setattr(srv.ctx.db.accounts, "login_keys", no_database)
        answers = {}
        for name in ("alice", "mallory"):
            wire = srv.connect()
            await wire.open()
            answers[name] = _server_first(await wire.send(_client_first(name)))
            wire.conn.close_stream()
        known, unknown = answers["alice"], answers["mallory"]
        assert known.keys() == unknown.keys() == {"r", "s", "i"}
        assert known["i"] == unknown["i"]
        assert len(base64.b64decode(known["s"])) == len(base64.b64decode(unknown["s"]))
    finally:
        await srv.stop()
