"""An unknown username must be answered as a typical account is, under every setting,
and the same way by every server process sharing the database.

Driven over the real server's plaintext loopback listener with a raw socket:
SCRAM's server-first message (RFC 5802 §5.1: salt and iteration count) and the
XEP-0078 IQ-get answer (the methods offered for a username) are compared
between an account made by `chatgate user add` and a name that has no account.
The decoys are keyed by installation secrets stored once in the database, so
two servers with different data directories on one database, and a restart,
give the same answers for an unknown name.
"""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import RunningServer, start_server

pytestmark = pytest.mark.e2e

HEADER = (
    "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


class Raw:
    """One plaintext connection to the `tls = "none"` listener."""

    def __init__(self, server: RunningServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.plain_port), timeout=10)
        self.buffer = ""
        self.sock.sendall(HEADER.encode())
        self.expect(r"</stream:features>|<stream:features/>")

    def expect(self, pattern: str) -> str:
        regex = re.compile(pattern, re.S)
        while True:
            match = regex.search(self.buffer)
            if match:
                self.buffer = self.buffer[match.end() :]
                return match.group(0)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed while waiting for {pattern!r}: {self.buffer!r}")
            self.buffer += data.decode()

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def close(self) -> None:
        self.sock.close()


def server_first(server: RunningServer, username: str, mechanism: str) -> dict[str, str]:
    """The attributes of SCRAM's server-first message for `username`."""
    raw = Raw(server)
    try:
        first = base64.b64encode(f"n,,n={username},r=fyko+d2lbbFgONRv9qkxdawL".encode())
        raw.send(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
            f"mechanism='{mechanism}'>{first.decode()}</auth>"
        )
        challenge = raw.expect(r"<challenge[^>]*>[^<]*</challenge>")
    finally:
        raw.close()
    text = base64.b64decode(re.sub(r"<[^>]+>", "", challenge)).decode()
    return dict(part.split("=", 1) for part in text.split(","))


def legacy_fields(server: RunningServer, username: str) -> str:
    """The XEP-0078 IQ-get answer's <query/> for `username`."""
    raw = Raw(server)
    try:
        raw.send(
            "<iq type='get' id='a1'><query xmlns='jabber:iq:auth'>"
            f"<username>{username}</username></query></iq>"
        )
        return raw.expect(r"<query xmlns=\"jabber:iq:auth\">.*?</query>")
    finally:
        raw.close()


def method_list(query: str) -> list[str]:
    """The element names of a jabber:iq:auth answer, without their texts."""
    return re.findall(r"<([a-z]+)(?=[\s/>])", query)[1:]


def legacy(options: str) -> str:
    return "\n[modules.legacy_auth]\nenabled = true\nallow_plaintext_without_tls = true\n" + options


def running(tmp: Path, extra: str) -> RunningServer:
    tmp.mkdir(exist_ok=True)
    return start_server(tmp, extra)


def stop(server: RunningServer) -> None:
    assert server.stop() == 0, server.log_text()
    assert "Traceback" not in server.log_text(), server.log_text()


SETTINGS = {
    # name: (legacy options in force when the account is made, and afterwards)
    "plain": ("", ""),
    "digest": ("digest = true\n", "digest = true\n"),
    "digest-and-zk": (
        "digest = true\nzero_knowledge = true\n",
        "digest = true\nzero_knowledge = true\n",
    ),
    # Switched on after the account was made: it holds no legacy secrets.
    "digest-later": ("", "digest = true\nzero_knowledge = true\n"),
}


@pytest.fixture
def settings_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServer]:
    iterations, setting = request.param
    before, after = SETTINGS[setting]
    auth = f"scram_iterations = {iterations}\n"
    srv = running(tmp_path, auth + legacy(before))
    srv.add_user("alice", "correct horse")
    if before != after:
        stop(srv)
        srv = running(tmp_path, auth + legacy(after))
    yield srv
    stop(srv)


@pytest.mark.parametrize(
    "settings_server",
    [(i, s) for i in (4096, 10000) for s in SETTINGS],
    ids=[f"i{i}-{s}" for i in (4096, 10000) for s in SETTINGS],
    indirect=True,
)
def test_unknown_name_is_answered_like_an_account(settings_server: RunningServer) -> None:
    srv = settings_server
    for mechanism in ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        known = server_first(srv, "alice", mechanism)
        unknown = server_first(srv, "nobody", mechanism)
        assert known.keys() == unknown.keys()
        assert unknown["i"] == known["i"]
        assert len(base64.b64decode(unknown["s"])) == len(base64.b64decode(known["s"]))
        # Asked again, an unknown name gets the same salt, as an account does.
        assert server_first(srv, "nobody", mechanism)["s"] == unknown["s"]
    known_methods = method_list(legacy_fields(srv, "alice"))
    assert method_list(legacy_fields(srv, "nobody")) == known_methods
    assert legacy_fields(srv, "nobody") == legacy_fields(srv, "nobody")


SHARED = 'scram_iterations = 10000\n[storage]\nurl = "sqlite+aiosqlite:///{db}"\n' + legacy(
    "zero_knowledge = true\n"
)


def decoys(server: RunningServer) -> tuple[str, str, str]:
    """What an unknown name gets: SCRAM salts and the zero-knowledge token."""
    sha1 = server_first(server, "nobody", "SCRAM-SHA-1")["s"]
    sha256 = server_first(server, "nobody", "SCRAM-SHA-256")["s"]
    return sha1, sha256, legacy_fields(server, "nobody")


def test_servers_sharing_a_database_give_the_same_decoys(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    first = running(tmp_path / "one", SHARED.format(db=db))
    try:
        first.add_user("alice", "correct horse")
        second = running(tmp_path / "two", SHARED.format(db=db))
        try:
            assert decoys(second) == decoys(first)
        finally:
            stop(second)
        before = decoys(first)
    finally:
        stop(first)
    again = running(tmp_path / "one", SHARED.format(db=db))
    try:
        assert decoys(again) == before
    finally:
        stop(again)
