"""XEP-0198 over XMPP-over-WebSocket (RFC 7395): the same connection driver, so the
same acknowledgements and resumption; a WebSocket whose TCP connection is reset
is hibernated like a TCP stream and resumed on a new WebSocket."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import RunningServer
from tests.e2e.web import WsClient, start_web_server

pytestmark = pytest.mark.e2e

PASSWORD = "web-password-1"
SM = "urn:xmpp:sm:3"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_web_server(tmp_path_factory.mktemp("ws-sm"))
    for name in ("alice", "bob"):
        srv.add_user(name, PASSWORD)
    yield srv
    assert srv.stop() == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


def url(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"


def reset(client: WsClient) -> None:
    """Reset the WebSocket's TCP connection (RST): no close frame, no `<close/>`."""
    assert client.ws is not None
    sock = client.ws.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport = client.ws._conn.transport  # type: ignore[union-attr]
    assert transport is not None
    transport.abort()


async def test_a_websocket_session_is_resumed_after_a_reset(server: RunningServer) -> None:
    async with WsClient(url(server)) as alice, WsClient(url(server)) as bob:
        await alice.login("alice", PASSWORD)
        await alice.bind("web")
        await alice.send(f"<enable xmlns='{SM}' resume='true'/>")
        enabled = await alice.recv_until("<enabled")
        token = re.search(r"id=[\"']([^\"']+)", enabled)
        assert token is not None and "resume='true'" in enabled
        await alice.send(f"<r xmlns='{SM}'/>")
        assert "h='0'" in await alice.recv_until("<a ")

        await bob.login("bob", PASSWORD)
        await bob.bind("web")
        reset(alice)
        await asyncio.sleep(0.5)
        await bob.send(
            "<message xmlns='jabber:client' to='alice@localhost/web' type='chat' id='m1'>"
            "<body>while away</body></message>"
        )
        await bob.send(
            "<iq xmlns='jabber:client' type='get' id='sync' to='localhost'>"
            "<ping xmlns='urn:xmpp:ping'/></iq>"
        )
        reply = await bob.recv_until("sync")
        assert "type='error'" not in reply and 'type="error"' not in reply

    async with WsClient(url(server)) as again:
        await again.login("alice", PASSWORD)
        features = await again.open()
        assert f"<sm xmlns='{SM}'/>" in features
        await again.send(f"<resume xmlns='{SM}' previd='{token.group(1)}' h='0'/>")
        resumed = await again.recv_until("<resumed")
        assert f'previd="{token.group(1)}"' in resumed
        replayed = await again.recv_until("while away")
        assert replayed.startswith("<message xmlns='jabber:client'"), replayed
