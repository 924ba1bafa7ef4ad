"""XEP-0078 legacy authentication against the real server, with Debian's Net::Jabber.

Net::XMPP's `AuthIQAuth` chooses the method from the IQ-get answer (zero-knowledge
over digest over plaintext), so which method runs depends on what the server
offers for the account: with neither `digest` nor `zero_knowledge` on, accounts
have no legacy secrets (plaintext only); with `digest` on, an account registered
in-band or made by `chatgate user add` has the digest secret, and with
`zero_knowledge` on it has a hash chain, which `chatgate user passwd` restarts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import RunningServer, start_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("perl") is None, reason="perl is not installed"),
]

PERL = Path(__file__).parent / "perl"

LEGACY = """
[modules.register]
enabled = true
require_tls = false

[modules.legacy_auth]
enabled = true
allow_plaintext_without_tls = true
{extra}
"""


def net_jabber() -> None:
    probe = subprocess.run(["perl", "-MNet::Jabber", "-e", "1"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("Net::Jabber is missing (tests/install-system-deps.sh installs it)")


def perl(script: str, *args: str) -> list[str]:
    net_jabber()
    done = subprocess.run(
        ["perl", str(PERL / script), *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def login(server: RunningServer, username: str, password: str, resource: str) -> list[str]:
    return perl("legacy_login.pl", f"127.0.0.1:{server.plain_port}", username, password, resource)


def reguser(server: RunningServer, *fields: str) -> list[str]:
    return perl("reguser.pl", f"127.0.0.1:{server.plain_port}", *fields)


def running(tmp: Path, extra: str) -> Iterator[RunningServer]:
    srv = start_server(tmp, LEGACY.format(extra=extra))
    yield srv
    code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from running(tmp_path_factory.mktemp("plain"), "")


@pytest.fixture(scope="module")
def digest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from running(tmp_path_factory.mktemp("digest"), "digest = true")


@pytest.fixture(scope="module")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from running(tmp_path_factory.mktemp("zk"), "zero_knowledge = true")


def test_net_jabber_plaintext_login(plain_server: RunningServer) -> None:
    plain_server.add_user("plainbill", "Calli0pe-pw")
    assert login(plain_server, "plainbill", "Calli0pe-pw", "globe") == [
        "[Fields] password resource username",
        "[Auth] ok",
        "[Session] plainbill@localhost/globe version chatgate",
    ]
    assert "plainbill@localhost authenticated with jabber:iq:auth/password" in (
        plain_server.log_text()
    )


def test_net_jabber_wrong_password_is_401(digest_server: RunningServer) -> None:
    digest_server.add_user("wrongbill", "Calli0pe-pw")
    assert login(digest_server, "wrongbill", "m1cro$oft", "globe")[1:] == ["[Auth] Error: 401"]


def test_net_jabber_digest_login(digest_server: RunningServer) -> None:
    assert reguser(digest_server, "username=leslie", "password=secret-leslie") == [
        "[Attempt] (leslie) Successful registration"
    ]
    assert login(digest_server, "leslie", "secret-leslie", "laptop") == [
        "[Fields] digest password resource username",
        "[Auth] ok",
        "[Session] leslie@localhost/laptop version chatgate",
    ]
    assert "leslie@localhost authenticated with jabber:iq:auth/digest" in (digest_server.log_text())
    assert login(digest_server, "leslie", "not-her-password", "laptop")[1] == "[Auth] Error: 401"


def test_net_jabber_digest_login_of_a_user_added_by_the_cli(digest_server: RunningServer) -> None:
    digest_server.add_user("clibill", "Calli0pe-pw")
    assert login(digest_server, "clibill", "Calli0pe-pw", "globe") == [
        "[Fields] digest password resource username",
        "[Auth] ok",
        "[Session] clibill@localhost/globe version chatgate",
    ]
    assert "clibill@localhost authenticated with jabber:iq:auth/digest" in (
        digest_server.log_text()
    )
    changed = digest_server.cli(
        "user", "passwd", "clibill", "--password-stdin", stdin="Terps1chore\n"
    )
    assert changed.returncode == 0, changed.stderr
    assert login(digest_server, "clibill", "Calli0pe-pw", "globe")[1] == "[Auth] Error: 401"
    assert login(digest_server, "clibill", "Terps1chore", "globe")[1] == "[Auth] ok"


def zero_knowledge_fields(lines: list[str]) -> tuple[int, str]:
    found = re.fullmatch(
        r"\[Fields\] password resource sequence=(\d+) token=([0-9A-F]{8}) username", lines[0]
    )
    assert found, lines
    return int(found.group(1)), found.group(2)


def test_cli_passwd_restarts_the_zero_knowledge_chain(zk_server: RunningServer) -> None:
    zk_server.add_user("clidj", "secret-dj")
    first = [zero_knowledge_fields(login(zk_server, "clidj", "secret-dj", f"r{n}")) for n in (1, 2)]
    assert [sequence for sequence, _ in first] == [499, 498]
    changed = zk_server.cli("user", "passwd", "clidj", "--password-stdin", stdin="secret-dj-2\n")
    assert changed.returncode == 0, changed.stderr
    lines = login(zk_server, "clidj", "secret-dj-2", "r3")
    sequence, token = zero_knowledge_fields(lines)
    assert sequence == 499 and token != first[0][1]  # a fresh chain with a new token
    assert lines[1] == "[Auth] ok"
    assert login(zk_server, "clidj", "secret-dj", "r4")[1] == "[Auth] Error: 401"


def test_net_jabber_zero_knowledge_login_walks_the_sequence_down(zk_server: RunningServer) -> None:
    assert reguser(zk_server, "username=dj", "password=secret-dj")[0].endswith("registration")
    sequences = []
    for attempt in range(3):
        lines = login(zk_server, "dj", "secret-dj", f"r{attempt}")
        found = re.fullmatch(
            r"\[Fields\] password resource sequence=(\d+) token=([0-9A-F]{8}) username", lines[0]
        )
        assert found, lines
        sequences.append(int(found.group(1)))
        assert lines[1:] == ["[Auth] ok", f"[Session] dj@localhost/r{attempt} version chatgate"]
    assert sequences == [499, 498, 497]
    assert (
        zk_server.log_text().count(": dj@localhost authenticated with jabber:iq:auth/zero-k") == 3
    )


def test_legacy_auth_off_is_service_unavailable(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    try:
        srv.add_user("bill", "Calli0pe-pw")
        assert login(srv, "bill", "Calli0pe-pw", "globe") == [
            "[Fields] Error: 503",
            "[Auth] Error: 503",
        ]
    finally:
        assert srv.stop() == 0
