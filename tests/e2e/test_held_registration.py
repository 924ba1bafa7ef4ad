"""A registration awaiting approval, against the real server: the right password
is refused with a text saying why (SASL PLAIN and SCRAM: <not-authorized/> with
<text/>, RFC 6120 §6.5; jabber:iq:auth: 401 with <text/>), a wrong one gets the
bare <not-authorized/> an unknown name gets, and after `chatgate registration
approve` in another process the same password logs in.

The client is `rawclient.RawClient` over STARTTLS (registration needs TLS), with
scramp for SCRAM; every attempt runs on its own stream.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest
from scramp import ScramClient

from .conftest import RunningServer, start_server
from .rawclient import RawClient, _b64

pytestmark = pytest.mark.e2e

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
HELD_TEXT = "your registration is awaiting approval by an administrator"
HELD = f"<failure xmlns='{SASL}'><not-authorized/><text xml:lang='en'>{HELD_TEXT}</text></failure>"
BARE = f"<failure xmlns='{SASL}'><not-authorized/></failure>"
OUTCOME = (
    rf"<failure xmlns=['\"]{SASL}['\"]>.*?</failure>|<success[^>]*/>|<success[^>]*>[^<]*</success>"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    extra = (
        "[modules.register]\nenabled = true\napproval = true\n"
        "[modules.legacy_auth]\nenabled = true\n"
    )
    srv = start_server(tmp_path_factory.mktemp("held"), extra)
    yield srv
    assert srv.stop() == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


def stream(server: RunningServer) -> RawClient:
    client = RawClient(server.starttls_port, server.certificate)
    client.connect()
    return client


def register(server: RunningServer, username: str, password: str) -> None:
    client = stream(server)
    try:
        client._send(
            "<iq type='set' id='reg'><query xmlns='jabber:iq:register'>"
            f"<username>{username}</username><password>{password}</password></query></iq>"
        )
        reply = client._expect(r"<iq[^>]*id=['\"]reg['\"][^>]*/>|<iq[^>]*id=['\"]reg['\"].*?</iq>")
        assert re.search(r"type=['\"]result['\"]", reply), reply
    finally:
        client.close()


def plain(server: RunningServer, username: str, password: str) -> str:
    """A PLAIN attempt on a new stream: the <failure/> as sent, or "success"."""
    client = stream(server)
    try:
        data = _b64(f"\0{username}\0{password}".encode())
        client._send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{data}</auth>")
        answer = client._expect(OUTCOME)
    finally:
        client.close()
    return "success" if answer.startswith("<success") else answer


def scram(server: RunningServer, username: str, password: str) -> str:
    """A SCRAM-SHA-256 attempt (scramp) on a new stream: the <failure/>, or "success"
    once scramp has checked the server's signature."""
    client = stream(server)
    try:
        scramp = ScramClient(["SCRAM-SHA-256"], username, password)
        kind, server_first = client.sasl("SCRAM-SHA-256", scramp.get_client_first().encode())
        assert kind == "challenge"
        scramp.set_server_first(server_first.decode())
        final = _b64(scramp.get_client_final().encode())
        client._send(f"<response xmlns='{SASL}'>{final}</response>")
        answer = client._expect(OUTCOME)
        if not answer.startswith("<success"):
            return answer
        # scramp checks the server's signature (v=): a server that knows the keys.
        scramp.set_server_final(base64.b64decode(re.sub(r"<[^>]+>", "", answer)).decode())
        return "success"
    finally:
        client.close()


def legacy(server: RunningServer, username: str, password: str) -> str:
    """A jabber:iq:auth plaintext attempt on a new stream: the reply IQ."""
    client = stream(server)
    try:
        client._send(
            "<iq type='set' id='auth2'><query xmlns='jabber:iq:auth'>"
            f"<username>{username}</username><password>{password}</password>"
            "<resource>globe</resource></query></iq>"
        )
        return client._expect(
            r"<iq[^>]*id=['\"]auth2['\"][^>]*/>|<iq[^>]*id=['\"]auth2['\"].*?</iq>"
        )
    finally:
        client.close()


def test_a_held_registration_is_told_only_with_the_right_password(
    server: RunningServer,
) -> None:
    register(server, "newbie", "newbie-pw-1")
    assert plain(server, "newbie", "newbie-pw-1") == HELD
    assert scram(server, "newbie", "newbie-pw-1") == HELD
    # A wrong password gets exactly what a name nobody registered gets.
    assert plain(server, "newbie", "wrong-pw-1") == BARE == plain(server, "nobody", "wrong-pw-1")
    assert scram(server, "newbie", "wrong-pw-1") == BARE == scram(server, "nobody", "wrong-pw-1")

    q = "['\"]"
    refusal = rf"<error type={q}auth{q} code={q}401{q}><not-authorized xmlns={q}{STANZAS}{q}/>"
    held = legacy(server, "newbie", "newbie-pw-1")
    assert re.search(rf"{refusal}<text xmlns={q}{STANZAS}{q}>{HELD_TEXT}</text></error>", held)
    for refused in (legacy(server, "newbie", "wrong-pw-1"), legacy(server, "nobody", "x-pw-1")):
        assert re.search(rf"{refusal}</error>", refused), refused


def test_after_approval_by_the_cli_the_same_password_logs_in(server: RunningServer) -> None:
    register(server, "approved", "approved-pw-1")
    assert plain(server, "approved", "approved-pw-1") == HELD
    done = server.cli("registration", "approve", "approved")
    assert done.returncode == 0, done.stderr
    assert plain(server, "approved", "approved-pw-1") == "success"
    assert scram(server, "approved", "approved-pw-1") == "success"
    assert plain(server, "approved", "wrong-pw-1") == BARE
