"""Issue 9 item 7 over real sockets: passwords over 1,024 bytes are refused before any
preparation, wherever they enter (SASL PLAIN, XEP-0077 registration, XEP-0078), and
registration attempts with a taken name count toward the address's attempt limit."""

from __future__ import annotations

import base64
import socket
import threading
import time

import pytest

from .conftest import RunningServer, start_server

pytestmark = pytest.mark.e2e

HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" to='localhost' version='1.0'>"
)
EXTRA = (
    "allow_plain_without_tls = true\n"
    "[auth.throttle.registration]\nattempts_per_address = 20\n"
    "[modules.register]\nenabled = true\nrequire_tls = false\n"
    "[modules.legacy_auth]\nenabled = true\nallow_plaintext_without_tls = true\n"
)
TOO_LONG = b"the password is longer than 1024 bytes"


def read_until(sock: socket.socket, *tokens: bytes) -> bytes:
    data = b""
    while not any(token in data for token in tokens):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def opened(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(HEADER)
    read_until(s, b"</stream:features>")
    return s


def plain(user: str, password: str) -> bytes:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return (
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode()
    )


def iq(query: str, iq_id: str = "r1") -> bytes:
    return f"<iq type='set' id='{iq_id}'>{query}</iq>".encode()


def register(username: str, password: str) -> str:
    return (
        "<query xmlns='jabber:iq:register'>"
        f"<username>{username}</username><password>{password}</password></query>"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    srv = start_server(tmp_path_factory.mktemp("limits"), EXTRA)
    srv.add_user("bob", "bobs password")
    yield srv
    assert srv.stop() == 0
    assert "Traceback" not in srv.log_text(), srv.log_text()


def test_plain_with_a_huge_password_is_malformed_request_at_once(server: RunningServer) -> None:
    """Six connections send 45,000-character passwords while bob logs in: each gets
    malformed-request at once, bob is not slowed, and nothing is counted as a guess."""
    answers: list[bytes] = []

    def huge() -> None:
        with opened(server.plain_port) as s:
            s.sendall(plain("bob", "é" * 22_500))
            answers.append(read_until(s, b"</failure>"))

    workers = [threading.Thread(target=huge) for _ in range(6)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    with opened(server.plain_port) as s:
        s.sendall(plain("bob", "bobs password"))
        assert b"<success" in read_until(s, b"<success", b"</failure>")
    for worker in workers:
        worker.join(timeout=30)
    assert time.monotonic() - started < 2.0
    assert len(answers) == 6
    for answer in answers:
        assert b"<malformed-request/>" in answer and TOO_LONG in answer
    assert server.log_text().count("mechanism=PLAIN condition=malformed-request user=-") == 6
    assert "brute-force protection" not in server.log_text()


def test_registration_with_an_over_long_password_is_not_acceptable(server: RunningServer) -> None:
    with opened(server.plain_port) as s:
        s.sendall(iq(register("leslie", "p" * 2000)))
        answer = read_until(s, b"</iq>")
    assert b'<error type="modify" code="406"><not-acceptable ' in answer
    assert TOO_LONG in answer and b"ppppp" not in answer


def test_legacy_login_with_an_over_long_password_is_not_acceptable(server: RunningServer) -> None:
    query = (
        "<query xmlns='jabber:iq:auth'><username>bob</username>"
        f"<password>{'p' * 2000}</password><resource>r</resource></query>"
    )
    with opened(server.plain_port) as s:
        s.sendall(iq(query, "a1"))
        answer = read_until(s, b"</iq>")
    assert b'<error type="modify" code="406"><not-acceptable ' in answer and TOO_LONG in answer


def test_registration_attempts_with_a_taken_name_are_counted(server: RunningServer) -> None:
    """1,292 attempts in 20 s at a taken name were all answered conflict; now the 21st
    attempt from the address (of any kind) is resource-constraint."""
    conflicts = 0
    answer = b""
    with opened(server.plain_port) as s:
        for i in range(25):  # bounded; the earlier tests made one attempt already
            s.sendall(iq(register("bob", "another password"), f"r{i}"))
            answer = read_until(s, b"</iq>")
            if b"<conflict " not in answer:
                break
            conflicts += 1
    assert 15 <= conflicts <= 20
    assert b'<error type="wait" code="500"><resource-constraint ' in answer
    assert b"too many registration attempts" in answer
