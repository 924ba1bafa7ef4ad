"""The parsing budget of a loop turn (`xmpp/transports/turns.py`) on the listener's
WebSocket lane (`http/lane_websocket.py`), with a real server in this process and
clients on real sockets: at a budget of 0 s every connection but the first read in
a turn waits for the next one, and logins and messages still go through, in
order; a connection waiting for its turn stops reading its socket, so a flood
while it waits is not buffered."""

from __future__ import annotations

import asyncio
import base64
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.http.lane_websocket import READ_SLICE, LaneWebSocket
from chatgate.server import Server
from chatgate.xmpp.transports.turns import TurnBudget
from tests.unit.http.bosh_client import start_web
from tests.unit.http.test_lane import (
    OPEN,
    client_frame,
    server_frame,
    websocket,
)
from tests.unit.xmpp.test_turn_budget_server import add_users, harshest

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
    await add_users(server, USERS)
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


async def ring(server: Server, users: list[str], count: int, padding: str = "") -> list[list[str]]:
    """`users` log in over WebSocket and wait for their own presence (RFC 6121
    §4.2.2: available from then on); then each sends `count` messages to the next
    one, all at once, in one write each (a body: the message's number, then
    `padding`).  What each received, as the numbers of its bodies in order."""
    clients = [await WsClient.login(server, user) for user in users]
    await asyncio.gather(*(client.until("presence") for client in clients))
    for i, client in enumerate(clients):
        to = users[(i + 1) % len(users)]
        client.send(
            *(
                f"<message xmlns='jabber:client' to='{to}@localhost' type='chat' id='m{n}'>"
                f"<body>{n} {padding}</body></message>".encode()
                for n in range(count)
            )
        )

    async def numbers(client: WsClient) -> list[str]:
        got: list[str] = []
        while len(got) < count:
            el = await asyncio.wait_for(client.until("message"), 10)
            got.append((el.findtext(C + "body") or "").split()[0])
        return got

    received = await asyncio.gather(*(numbers(client) for client in clients))
    for client in clients:
        client.writer.close()
    return list(received)


async def test_with_every_turn_over_budget_every_message_arrives_in_order(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    deferrals = harshest(monkeypatch)
    received = await ring(server, USERS, MESSAGES)
    assert all(got == [str(n) for n in range(MESSAGES)] for got in received), received
    assert deferrals[0] > 0  # the budget did hold WebSocket connections back


class SpentBudget:
    """A budget always spent, whose next turn has not come: records who is queued."""

    def __init__(self) -> None:
        self.queued: list[object] = []

    def spent(self) -> bool:
        return True

    def defer(self, connection: object) -> None:
        self.queued.append(connection)


async def test_a_connection_read_after_the_budget_waits_and_stops_reading(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _, writer = await opened(server, monkeypatch)
    budget = SpentBudget()
    ws._turns = budget  # type: ignore[assignment]
    writer.write(b"\x00" * FLOOD)  # not a frame: nothing may parse it before its turn
    await asyncio.sleep(0.5)
    assert budget.queued == [ws]  # queued once, whatever the reads
    held = ws._reader.buffered
    # At most two reads (a read is up to 256 KiB): reading on would have taken it all.
    assert 0 < held <= 2 * 256 * 1024, held
    # Its turn comes: what it holds is read, and refused (a continuation frame that
    # continues nothing, and unmasked) as any malformed input is: 1002, closed.
    ws._go_on()
    assert ws._close_code == 1002
    assert ws._transport.is_closing()
    writer.close()


async def test_a_wait_that_ends_in_a_spent_turn_waits_for_the_next_turn(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads that resume after the slice or the byte rate ran out are under the
    budget too: a client sending more than a slice at once has the rest parsed
    from `_read_on`, which then queues it when another client spent the turn."""
    deferrals = harshest(monkeypatch)
    callers: list[str] = []
    defer = TurnBudget.defer  # harshest's counting version

    def recording(self: TurnBudget, connection: object) -> None:
        callers.append(sys._getframe(1).f_code.co_name)
        defer(self, connection)  # type: ignore[arg-type]

    monkeypatch.setattr(TurnBudget, "defer", recording)
    # ten slices each, in one write: reads of more than a slice, so the rest of
    # each is read on from `_read_on`
    padding = "x" * 1000
    many = 10 * READ_SLICE // len(padding)
    received = await ring(server, USERS[:2], many, padding)
    assert all(got == [str(n) for n in range(many)] for got in received)
    assert "_read_on" in callers, callers
    assert deferrals[0] == len(callers)


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
