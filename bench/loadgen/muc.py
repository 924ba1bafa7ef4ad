"""The group chat scenario (issue 15): one room of N occupants, one of them sending
groupchat messages in a closed window; the figure is deliveries/s to occupants.

Every occupant is a real session that joined the room (XEP-0045 §7.2) on the
server's own MUC service; the first one creates it and accepts the default
configuration (an instant room, §10.1.2), as a client does, so servers that
lock new rooms until configured (Prosody) are measured on the same room as the
others.  Each delivered message carries a marker its receivers count; the sender
is an occupant too and gets its own copy back (§7.4), which counts like any.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bench.loadgen.measure import Window
from bench.loadgen.scenarios import marker_counter
from bench.loadgen.xmpp import DOMAIN, Connection, XmppError

if TYPE_CHECKING:
    from bench.loadgen.scenarios import Runner

MUC_NS = "http://jabber.org/protocol/muc"
MUC_MARK = b">mucbench<"
ROOM = "bench"
JOIN_TIMEOUT = 15.0


def room_jid(service: str) -> str:
    return f"{ROOM}@{service}"


async def join(conn: Connection, service: str, nick: str, *, create: bool) -> None:
    """Enter the room as `nick` (no history) and wait for the own presence (status
    110); the creator also submits the instant-room form (§10.1.2)."""
    room = room_jid(service)
    conn.write(
        f"<presence to='{room}/{nick}'><x xmlns='{MUC_NS}'>"
        "<history maxstanzas='0'/></x></presence>".encode()
    )
    async with asyncio.timeout(JOIN_TIMEOUT):
        while True:
            _, element = await conn.expect(b"presence")
            if b"type='error'" in element or b'type="error"' in element:
                raise XmppError(f"join of {room} refused: {element[:300]!r}")
            if b"110" in element and (
                f"/{nick}'".encode() in element or f'/{nick}"'.encode() in element
            ):
                break
        if create:
            conn.write(
                f"<iq type='set' id='create' to='{room}'>"
                f"<query xmlns='{MUC_NS}#owner'><x xmlns='jabber:x:data' type='submit'/>"
                "</query></iq>".encode()
            )
            while True:
                _, element = await conn.expect(b"iq")
                if b"'create'" in element or b'"create"' in element:
                    if b"type='error'" in element or b'type="error"' in element:
                        raise XmppError(f"creating {room} refused: {element[:300]!r}")
                    break


async def muc_fanout(
    runner: Runner,
    occupants: int,
    window_size: int,
    warmup: float,
    duration: float,
    service: str = f"conference.{DOMAIN}",
) -> dict[str, Any]:
    """N occupants in one room; one sends groupchat messages, at most `window_size`
    of them undelivered to some occupant at a time; deliveries/s to occupants."""
    state = {"delivered": 0, "sent": 0, "running": True}

    def on_marks(k: int) -> None:
        state["delivered"] += k
        pump()

    def make_counter() -> Callable[[bytes], None]:
        return marker_counter(MUC_MARK, on_marks)

    numbers = list(range(occupants))
    creator = await runner.login(numbers[0])
    await join(creator, service, "u0", create=True)

    async def enter(n: int, conn: Connection) -> None:
        await join(conn, service, f"u{n}", create=False)

    others = await runner.login_many(numbers[1:], concurrency=16, after=enter)
    # What each occupant still has buffered (others' joins) goes to its counter.
    for conn in [creator, *others]:
        conn.hand_over(make_counter())
    await asyncio.sleep(0.3)
    room = room_jid(service)
    message = f"<message to='{room}' type='groupchat'><body>mucbench</body></message>".encode()
    limit = window_size * occupants

    def pump() -> None:
        if not state["running"]:
            return
        in_flight = state["sent"] * occupants - state["delivered"]
        n = (limit - in_flight) // occupants
        if n > 0:
            state["sent"] += n
            creator.send_repeated(message, n)

    pump()
    await asyncio.sleep(warmup)
    win = Window(runner.server_pid)
    d0, s0 = state["delivered"], state["sent"]
    win.start()
    await asyncio.sleep(duration)
    measured = win.stop()
    delivered = state["delivered"] - d0
    sent = state["sent"] - s0
    state["running"] = False
    await asyncio.sleep(0.2)
    for conn in [creator, *others]:
        conn.close()
    seconds = measured["seconds"]
    return runner._result(
        occupants=occupants,
        window_size=window_size,
        deliveries=delivered,
        deliveries_per_s=round(delivered / seconds, 1),
        messages_per_s=round(sent / seconds, 1),
        window=measured,
    )
