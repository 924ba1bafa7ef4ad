"""The parsing budget of a loop turn (`xmpp/transports/turns.py`) on the listener's
WebSocket lane (`http/lane_websocket.py`), with a real server in this process and
clients on real sockets: at a budget of 0 s every connection but the first read in
a turn waits for the next one, and logins and messages still go through, in
order; a connection waiting for its turn stops reading its socket, so a flood
while it waits is not buffered."""

from __future__ import annotations

import asyncio
import base64
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.auth.credentials import derive_all
from chatgate.http.lane_websocket import LaneWebSocket
from chatgate.server import Server
from tests.unit.http.bosh_client import start_web
from tests.unit.http.test_lane import OPEN, client_frame, server_frame, websocket
from tests.unit.xmpp.test_turn_budget_server import harshest

C = "{jabber:client}"
USERS = [f"user{i}" for i in range(8)]
MESSAGES = 40
#: bytes a client floods with while its connection waits for its turn
FLOOD = 12 * 1024 * 1024


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    server = await start_web(
        tmp_path,
        {"websocket": {"enabled": True}},
        auth={"mechanisms": ["PLAIN"], "allow_plain_without_tls": True},
    )
    assert server.ctx is not None
    for user in USERS:
        await server.ctx.db.accounts.create(
            user, "localhost", derive_all(f"{user}-pw", iterations=4096)
        )
        server.ctx.provider.invalidate(user, "localhost")  # type: ignore[attr-defined]
    yield server
    await server.stop()


class WsClient:
    """An XMPP client over RFC 7395 frames: PLAIN, bind, one element per frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def login(cls, server: Server, user: str) -> WsClient:
        client = cls(*await websocket(server))
        client.send(OPEN)
        await client.until("features")
        token = base64.b64encode(f"\0{user}\0{user}-pw".encode())
        client.send(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>" % token
        )
        assert (await client.until("success", "failure")).tag.endswith("success")
        client.send(OPEN)
        await client.until("features")
        client.send(
            b"<iq xmlns='jabber:client' type='set' id='b'>"
            b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>"
        )
        assert (await client.until("iq")).get("type") == "result"
        client.send(b"<presence xmlns='jabber:client'/>")
        return client

    def send(self, *payloads: bytes) -> None:
        self.writer.write(b"".join(client_frame(0x1, p) for p in payloads))

    async def element(self) -> ET.Element:
        opcode, payload = await server_frame(self.reader)
        assert opcode == 0x1, (opcode, payload)
        return ET.fromstring(payload)

    async def until(self, *names: str) -> ET.Element:
        while True:
            el = await self.element()
            if el.tag.rsplit("}", 1)[-1] in names:
                return el


async def opened(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> tuple[LaneWebSocket, asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket connection to `server`, and the server's side of it."""
    made: list[LaneWebSocket] = []
    init = LaneWebSocket.__init__

    def recording(self: LaneWebSocket, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(self)

    monkeypatch.setattr(LaneWebSocket, "__init__", recording)
    reader, writer = await websocket(server)
    for _ in range(100):
        if made:
            break
        await asyncio.sleep(0.01)
    (ws,) = made
    return ws, reader, writer


async def test_with_every_turn_over_budget_every_message_arrives_in_order(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    deferrals = harshest(monkeypatch)
    clients = [await WsClient.login(server, user) for user in USERS]
    # each is available once its own presence comes back (RFC 6121 §4.2.2)
    await asyncio.gather(*(client.until("presence") for client in clients))
    # every client sends to the next one, all at once, in one write each
    for i, client in enumerate(clients):
        to = USERS[(i + 1) % len(USERS)]
        client.send(
            *(
                f"<message xmlns='jabber:client' to='{to}@localhost' type='chat' id='m{n}'>"
                f"<body>{n}</body></message>".encode()
                for n in range(MESSAGES)
            )
        )

    async def bodies(client: WsClient) -> list[str]:
        got: list[str] = []
        while len(got) < MESSAGES:
            el = await asyncio.wait_for(client.until("message"), 10)
            got.append(el.findtext(C + "body") or "")
        return got

    received = await asyncio.gather(*(bodies(client) for client in clients))
    for client in clients:
        client.writer.close()
    assert all(got == [str(n) for n in range(MESSAGES)] for got in received), received
    assert deferrals[0] > 0  # the budget did hold WebSocket connections back


async def test_a_connection_waiting_for_its_turn_stops_reading_its_socket(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _, writer = await opened(server, monkeypatch)
    # Held back by a turn whose budget was spent, and its turn not come yet.
    ws._deferred = True
    writer.write(b"\x00" * FLOOD)  # what it is does not matter: nothing parses it
    await asyncio.sleep(0.5)
    held = ws._reader.buffered
    # One read at most (256 KiB): reading on would have taken the whole flood.
    assert 0 < held <= 256 * 1024, held
    # Its turn comes: what it holds is read (and refused: not a frame), and the
    # connection ends as for any other malformed input.
    ws._go_on()
    assert not ws._deferred
    writer.close()
    await asyncio.sleep(0)


async def test_a_wait_of_more_than_one_turn_pauses_the_socket(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`_keep_waiting` (a turn ran out before this connection's turn came)."""
    ws, reader, writer = await opened(server, monkeypatch)
    ws._keep_waiting()
    writer.write(client_frame(0x1, OPEN))
    # not read (the socket is paused), so not answered
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    assert ws._reader.buffered == 0
    ws._go_on()  # its turn: the socket is read again, the stream opens
    opcode, payload = await server_frame(reader)
    assert opcode == 0x1 and payload.startswith(b"<open ")
    writer.close()
