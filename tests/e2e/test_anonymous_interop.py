"""ANONYMOUS as Strophe.js (and so converse.js) does it, against the real server.

Strophe.js's ANONYMOUS is not client-first: it sends `<auth mechanism='ANONYMOUS'/>`
with no initial response, has no challenge handler, and its login fails on any
`<challenge/>` (issue 10, item 1).  The server must answer `<success/>` at once.
The client is a raw socket, since slixmpp always sends an initial response.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import RunningServer, start_server
from tests.e2e.rawclient import Features, RawClient

pytestmark = pytest.mark.e2e

GUEST = "guest.localhost"


class GuestClient(RawClient):
    """RawClient whose stream header names the anonymous host."""

    def _open_stream(self) -> Features:
        self.buffer = ""
        self._send(
            f"<?xml version='1.0'?><stream:stream to='{GUEST}' version='1.0' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        )
        text = self._expect(r"<stream:features>.*?</stream:features>|<stream:features/>")
        return Features.parse(text)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(
        tmp_path_factory.mktemp("anon"),
        extra=f'\n[hosts."{GUEST}"]\nanonymous = true\n',
    )
    yield srv
    code = srv.stop()
    assert code == 0, f"server exit code {code}:\n{srv.log_text()}"
    assert "Traceback" not in srv.log_text(), srv.log_text()


@pytest.mark.parametrize(
    "auth",
    [
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>",
        # Strophe.js serializes with double quotes
        '<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="ANONYMOUS"/>',
    ],
    ids=["single-quotes", "strophe"],
)
@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct"])
def test_auth_without_initial_response_gets_success_at_once(
    server: RunningServer, auth: str, direct_tls: bool
) -> None:
    port = server.direct_tls_port if direct_tls else server.starttls_port
    client = GuestClient(port, server.certificate, direct_tls=direct_tls)
    try:
        features = client.connect()
        assert features.mechanisms == ["ANONYMOUS"]
        client._send(auth)
        kind, data = client._sasl_answer()
        assert (kind, data) == ("success", b"")
        jid = client.bind()
        assert re.fullmatch(rf"[a-z2-7]{{16}}@{re.escape(GUEST)}/.+", jid), jid
    finally:
        client.close()
