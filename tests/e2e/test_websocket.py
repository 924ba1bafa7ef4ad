"""XMPP over WebSocket (RFC 7395) against the real server: interop with a TCP
client, and every framing rule a client can break, each with the RFC's answer."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.conftest import RunningServer, logged_in
from tests.e2e.web import CLOSE, FRAMING, OPEN, BoshClient, WsClient, start_web_server

pytestmark = pytest.mark.e2e

PASSWORD = "web-password-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_web_server(tmp_path_factory.mktemp("ws"))
    for name in ("alice", "bob"):
        srv.add_user(name, PASSWORD)
    yield srv
    assert srv.stop() == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


def url(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"


async def test_a_websocket_client_chats_with_a_tcp_client(server: RunningServer) -> None:
    async with WsClient(url(server)) as alice, logged_in(server, "bob@localhost", PASSWORD) as bob:
        await alice.login("alice", PASSWORD)
        jid = await alice.bind("web")
        assert jid == "alice@localhost/web"
        await alice.send(
            "<message xmlns='jabber:client' to='bob@localhost' type='chat' id='m1'>"
            "<body>hello from the browser</body></message>"
        )
        got = await asyncio.wait_for(bob.messages.get(), 5)
        assert got["body"] == "hello from the browser" and str(got["from"]) == jid
        bob.send_message(mto=jid, mbody="hello from TCP", mtype="chat")
        reply = await alice.recv_until("hello from TCP")
        # RFC 7395 §3.3.3: every message stands alone, with its namespace declared.
        assert reply.startswith("<message xmlns='jabber:client'"), reply
        await alice.send(CLOSE)
        assert await alice.recv() == f"<close xmlns='{FRAMING}'/>"
        assert await alice.closed()


async def test_the_handshake_needs_the_xmpp_subprotocol(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url(server), protocols=("chat",))
    assert refused.value.status == 400


async def _stream_error(client: WsClient, message: str) -> str:
    """Send `message` on a fresh stream; return the stream error the server answers."""
    await client.open()
    await client.send(message)
    error = await client.recv_until("stream:error")
    assert "xmlns:stream='http://etherx.jabber.org/streams'" in error
    assert await client.recv() == f"<close xmlns='{FRAMING}'/>"
    assert await client.closed()
    return error


@pytest.mark.parametrize(
    ("message", "condition"),
    [
        ("<message><body>unclosed</message>", "not-well-formed"),
        ("<presence/><presence/>", "not-well-formed"),
        ("<message xmlns='jabber:client'><body>x</body>", "not-well-formed"),
        ("text <presence/>", "bad-format"),
        ("<!DOCTYPE x [<!ENTITY a 'b'>]><presence/>", "restricted-xml"),
        ("<iq type='get' id='1'><x>" + "a" * 70_000 + "</x></iq>", "policy-violation"),
        ("<message to='bob@localhost'><body>before auth</body></message>", "not-authorized"),
    ],
)
async def test_bad_messages_get_the_stream_error(
    server: RunningServer, message: str, condition: str
) -> None:
    async with WsClient(url(server)) as client:
        error = await _stream_error(client, message)
        assert f"<{condition} " in error, error


async def test_the_stream_begins_with_open(server: RunningServer) -> None:
    async with WsClient(url(server)) as client:
        await client.send("<presence xmlns='jabber:client'/>")
        opened = await client.recv()  # RFC 6120 §4.9.1.2: the stream is opened first
        assert opened.startswith(f"<open xmlns='{FRAMING}'")
        assert "<bad-format " in await client.recv()
        assert await client.recv() == CLOSE.replace('"', "'")


async def test_binary_messages_are_refused(server: RunningServer) -> None:
    async with WsClient(url(server)) as client:
        await client.open()
        assert client.ws is not None
        await client.ws.send_bytes(b"<presence/>")
        assert "<bad-format " in await client.recv_until("stream:error")


async def test_an_unknown_host_is_refused(server: RunningServer) -> None:
    async with WsClient(url(server)) as client:
        await client.send(OPEN.replace("to='localhost'", "to='elsewhere.example'"))
        assert (await client.recv()).startswith("<open ")
        assert "<host-unknown " in await client.recv()
        assert await client.recv() == f"<close xmlns='{FRAMING}'/>"


async def test_nothing_after_close_is_processed(server: RunningServer) -> None:
    async with WsClient(url(server)) as alice, logged_in(server, "bob@localhost", PASSWORD) as bob:
        await alice.login("alice", PASSWORD)
        await alice.bind("late")
        await alice.send(CLOSE)
        await alice.send(
            "<message xmlns='jabber:client' to='bob@localhost' type='chat'>"
            "<body>after close</body></message>"
        )
        assert await alice.closed()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(bob.messages.get(), 1.0)


async def test_a_vanished_client_leaves_no_session(server: RunningServer) -> None:
    async with logged_in(server, "bob@localhost", PASSWORD) as bob:
        client = WsClient(url(server))
        await client.__aenter__()
        await client.login("alice", PASSWORD)
        jid = await client.bind("gone")
        # The TCP connection dies without a WebSocket close.
        assert client.ws is not None and client.http is not None
        transport = client.ws._response.connection.transport  # type: ignore[union-attr]
        assert transport is not None
        transport.abort()
        await client.http.close()
        for _ in range(50):
            try:
                await bob.plugin["xep_0199"].send_ping(jid, timeout=2)
            except Exception as exc:  # the session is gone: an error answer
                assert "service-unavailable" in str(exc) or "recipient-unavailable" in str(exc)
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the vanished WebSocket session still answers")


async def test_see_other_uri_sends_clients_elsewhere(tmp_path: Path) -> None:
    srv = start_web_server(
        tmp_path, "[http.websocket]\nsee_other_uri = 'wss://chat.example.org/xmpp'\n"
    )
    try:
        async with WsClient(url(srv)) as client:
            await client.send(OPEN)
            moved = await client.recv()
            assert moved == (
                f"<close xmlns='{FRAMING}' see-other-uri=\"wss://chat.example.org/xmpp\"/>"
            )
            assert await client.closed()
    finally:
        assert srv.stop() == 0


async def test_a_peer_that_does_not_answer_pings_is_closed(tmp_path: Path) -> None:
    srv = start_web_server(tmp_path, "[http.websocket]\nping_interval = 0.5\n")
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(url(srv), protocols=("xmpp",), autoping=False)
            await ws.send_str(OPEN)
            kinds = []
            while True:
                msg = await ws.receive(timeout=5)
                kinds.append(msg.type)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
            assert aiohttp.WSMsgType.PING in kinds
    finally:
        assert srv.stop() == 0


async def test_shutdown_ends_web_sessions_with_system_shutdown(tmp_path: Path) -> None:
    srv = start_web_server(tmp_path)
    srv.add_user("alice", PASSWORD)
    async with (
        WsClient(url(srv)) as ws,
        BoshClient(f"http://127.0.0.1:{srv.http_port}/http-bind") as bosh,
    ):
        await ws.login("alice", PASSWORD)
        await ws.bind("ws")
        await bosh.login("alice", PASSWORD)
        await bosh.bind("bosh")
        held = asyncio.ensure_future(bosh.request())  # a request the server holds
        await asyncio.sleep(0.3)
        srv.process.send_signal(signal.SIGTERM)
        error = await ws.recv_until("stream:error")
        assert "<system-shutdown " in error
        assert await ws.recv() == f"<close xmlns='{FRAMING}'/>"
        terminated = await asyncio.wait_for(held, 10)
        assert "type='terminate'" in terminated or 'type="terminate"' in terminated, terminated
        assert "system-shutdown" in terminated, terminated
    assert srv.process.wait(20) == 0
