"""Brute-force protection seen from outside: 200 wrong passwords from one address are
slowed down and logged, while another account logs in normally from another address."""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path

import pytest

from .conftest import start_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" to='localhost' version='1.0'>"
)


def read_until(sock: socket.socket, token: bytes) -> bytes:
    data = b""
    while token not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def plain_attempts(port: int, user: str, password: str, attempts: int, source: str) -> list[bytes]:
    """Up to `attempts` PLAIN logins on one connection; the server's answer to each."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as s:
        s.sendall(HEADER)
        read_until(s, b"</stream:features>")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        for _ in range(attempts):
            s.sendall(
                f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode()
            )
            answer = (
                read_until(s, b"</failure>") if password == "wrong" else read_until(s, b"<success")
            )
            answers.append(answer)
            if b"<success" in answer or b"stream:error" in answer:
                break
    return answers


def test_brute_force_is_slowed_and_logged_while_others_log_in(tmp_path: Path) -> None:
    srv = start_server(
        tmp_path,
        extra=(
            "allow_plain_without_tls = true\n"
            "[auth.throttle.address]\nfree_failures = 5\nbase_delay = 0.01\nmax_delay = 0.05\nban_after = 0\n"
            "[auth.throttle.account]\nfree_failures = 1000\n"
        ),
    )
    try:
        srv.add_user("victim", "the real password")
        srv.add_user("bob", "bobs password")
        started = time.monotonic()
        failures = refusals = 0
        for _ in range(400):  # bounded: 200 wrong passwords need ~67 connections
            answers = plain_attempts(srv.plain_port, "victim", "wrong", 3, "127.0.0.1")
            failures += sum(b"<not-authorized/>" in a for a in answers)
            refusals += sum(b"<temporary-auth-failure/>" in a for a in answers)
            if failures >= 200:
                break
        assert failures >= 200
        # A lone sequential attacker is delayed, never refused unevaluated (no ban here).
        assert refusals == 0
        attack_time = time.monotonic() - started

        # Bob, from another address, is not slowed down.
        started = time.monotonic()
        answers = plain_attempts(srv.plain_port, "bob", "bobs password", 1, "127.0.0.2")
        bob_time = time.monotonic() - started
        assert b"<success" in answers[-1]
        assert bob_time < 1.0

        # The attack was slowed: after the 5 free failures each attempt waited ≥ ~0.05 s.
        assert attack_time > (200 - 10) * 0.04
        log = srv.log_text()
        assert "brute-force protection: address=127.0.0.1 user=victim@localhost" in log
        # One line when throttling starts and when it escalates, not one per failure.
        assert 1 <= log.count("brute-force protection:") < 20
        # The victim still logs in from a clean address.
        answers = plain_attempts(srv.plain_port, "victim", "the real password", 1, "127.0.0.3")
        assert b"<success" in answers[-1]
    finally:
        srv.stop()
