"""One component connection: the asyncio adapter around `stream.ComponentStream`.

It reuses what client connections use, with the same limits: the stream parser
(`[limits] max_stanza_size`, `max_depth`), their paced reading
(`xmpp.transports.pacing`: byte-rate shaping by token bucket, `preauth_rate` until
the handshake succeeds and `c2s_rate` after, one read slice per loop turn, pauses
for independent reasons), the per-turn output coalescing of TCP streams, and the
output limit (`max_output_buffer`: a component that does not read is
disconnected).  Reading pauses while a stanza waits for storage, so the
component's stanzas are handled strictly in order and what it sends is never
buffered without bound.

Everything that goes wrong on one connection closes that connection only, with the
stream error the parser or the core chose.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Protocol

from chatgate.auth.throttle import Refuse as ThrottleRefuse
from chatgate.components import stream as cs
from chatgate.components.routing import route_from_component
from chatgate.jid import JID
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import PeerProtocolError, StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.parser import StreamEvent, XmlStreamParser
from chatgate.xml.serialize import escape_attr, serialize
from chatgate.xmpp.c2s import READ_SLICE
from chatgate.xmpp.framing import StreamError
from chatgate.xmpp.output import TcpStreamOutput
from chatgate.xmpp.shaper import TokenBucket
from chatgate.xmpp.transports.pacing import FIRST_FREE, WRITE, PacedReader

if TYPE_CHECKING:
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)

#: Stanzas queued behind one that waits for storage before reading pauses.
QUEUE_HIGH_WATER = 256
#: Seconds the peer's input is still read (and dropped) after our side closed, so
#: that unread input does not turn our stream error into a reset.
LINGER = 2.0
#: Seconds a closed connection may take to flush what it owes its peer.
CLOSE_TIMEOUT = 10.0

#: Why reading is paused, beside `pacing`'s reasons: the handshake is being answered.
_DECIDING = FIRST_FREE


class Hub(Protocol):
    """What a connection needs of the components' hub (`hub.py`)."""

    @property
    def ctx(self) -> ServerContext: ...

    @property
    def secrets(self) -> Mapping[str, str]:
        """Shared secrets by component domain."""
        ...

    def admit(self, conn: ComponentConnection) -> bool: ...

    def claim(self, domain: str, conn: ComponentConnection) -> bool | Awaitable[bool]: ...

    def release(self, domain: str, conn: ComponentConnection) -> None: ...

    def gone(self, conn: ComponentConnection) -> None: ...


class ComponentConnection(PacedReader, asyncio.Protocol):
    """Drives one component connection from the first byte to the close.

    It is its own `pacing.Consumer` (`connection` is itself): the parsed events go
    to `events`, the stream's errors to `protocol_error`."""

    #: Bytes parsed per loop turn (`pacing.Consumer`): an established client's.
    read_slice = READ_SLICE

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        limits = hub.ctx.config.limits
        self._limits = limits
        self.stream_id = secrets.token_hex(12)
        self.core = cs.ComponentStream(hub.secrets, self.stream_id)
        self._parser = XmlStreamParser(
            max_stanza_bytes=limits.max_stanza_size, max_depth=limits.max_depth
        )
        self._init_reading()
        self._loop = asyncio.get_event_loop()
        self.connection = self
        self.output = TcpStreamOutput(self._write, self._loop)
        self.address = "-"
        self.closed = False
        self._header_sent = False
        #: the byte rate (`pacing.Consumer`)
        self.read_bucket: TokenBucket | None = None
        self._queue: deque[tuple[Element, JID]] = deque()
        self._busy = False
        self._timers: list[asyncio.TimerHandle] = []
        self._handshake_timer: asyncio.TimerHandle | None = None
        #: events parsed after a handshake still being decided (at most one read's)
        self._held_events: list[StreamEvent] = []
        self._overflowed = False
        #: the domain this connection serves once its handshake succeeded
        self.serving: str | None = None

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.address = self._attach(transport) or "-"
        if not self.hub.admit(self):
            self.close_stream(
                StreamErrorCondition.POLICY_VIOLATION, "too many component connections"
            )
            return
        limits = self._limits
        if limits.preauth_rate:
            self.read_bucket = TokenBucket(
                limits.preauth_rate, limits.preauth_burst, self._loop.time()
            )
        timeout = self.hub.ctx.config.component_listener.handshake_timeout
        self._handshake_timer = self._loop.call_later(timeout, self._handshake_timeout)
        self._timers.append(self._handshake_timer)

    def data_received(self, data: bytes) -> None:
        self._feed(data)  # dropped once closed: the consumer (this) is closed

    def events(self, events: list[StreamEvent]) -> None:
        """Events in order; those that follow a handshake still being decided (a
        claim in Redis) wait for its outcome (`_claimed`)."""
        for index, event in enumerate(events):
            if self.closed:
                return
            if self.core.state is cs.State.VERIFYING:
                self._held_events = events[index:]
                return
            self._act(self.core.receive(event))

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.core.fail()
        self._parser.close()
        self._stop_reading()
        self._held_events = []
        self._queue.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.output.discard()
        self.hub.gone(self)

    # ------------------------------------------------------------ what the server uses

    def deliver(self, stanza: Element) -> None:
        """A stanza for the component (its 'to' on the component's domain)."""
        self.output.element(serialize(stanza).encode())

    def sweep_idle(self) -> bool:
        return False  # few, long-lived connections: their parsers stay

    def close_stream(self, condition: StreamErrorCondition | None = None, text: str = "") -> None:
        """End the stream (after a stream error when `condition` is set) and close."""
        if self.closed:
            return
        self.closed = True
        self._lingering = True
        self.core.fail()
        if not self._header_sent:
            # RFC 6120 §4.9.1.2: a stream error needs our header first.
            self._send_header(self.core.domain or self.hub.ctx.domain)
        self.output.end(StreamError(condition, text) if condition is not None else None)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._timers.append(self._loop.call_later(CLOSE_TIMEOUT, transport.abort))
        if transport.can_write_eof():
            transport.write_eof()
            if self._socket_paused:
                self._socket_paused = False
                transport.resume_reading()
            self._timers.append(self._loop.call_later(LINGER, transport.close))
        else:
            transport.close()

    # ------------------------------------------------------------ the core's actions

    def _act(self, actions: list[cs.Action]) -> None:
        for action in actions:
            if isinstance(action, cs.Route):
                self._route(action.stanza, action.to)
            elif isinstance(action, cs.Reply):
                self.deliver(action.stanza)
            elif isinstance(action, cs.OpenStream):
                self._send_header(action.domain)
            elif isinstance(action, cs.Authenticate):
                self._authenticate(action.domain)
            elif isinstance(action, cs.Refuse):
                self._refuse(action.domain)
            elif isinstance(action, cs.Close):
                self.close_stream(action.condition, action.text)

    def _send_header(self, domain: str) -> None:
        self._header_sent = True
        self.output.element(
            (
                "<?xml version='1.0'?>"
                f"<stream:stream xmlns='{cs.COMPONENT}' xmlns:stream='{ns.STREAMS}'"
                f" from=\"{escape_attr(domain)}\" id='{self.stream_id}'>"
            ).encode()
        )

    def _throttled(self, domain: str) -> bool:
        """The login throttle (`[auth.throttle]`, shared in a cluster) counts
        handshakes per address and per component domain as it counts SASL attempts;
        True (and the stream closed) when it refuses this one, right or wrong."""
        verdict = self.hub.ctx.auth_throttle.check(self.address, domain, self._loop.time())
        if isinstance(verdict, ThrottleRefuse):
            log.info("component %s from %s: handshake throttled", domain, self.address)
            self.close_stream(
                StreamErrorCondition.POLICY_VIOLATION,
                f"too many handshakes: retry in {verdict.retry_after:.0f} s",
            )
            return True
        return False

    def _authenticate(self, domain: str) -> None:
        if self._throttled(domain):
            return
        self.hub.ctx.auth_throttle.succeeded(self.address, domain, self._loop.time())
        self._pause(_DECIDING)
        claimed = self.hub.claim(domain, self)
        if isinstance(claimed, bool):
            self._claimed(domain, claimed)
        else:
            task = asyncio.ensure_future(claimed)
            task.add_done_callback(lambda t: self._claimed(domain, _outcome(t)))

    def _claimed(self, domain: str, claimed: bool) -> None:
        if self.closed:
            if claimed:
                self.hub.release(domain, self)
            return
        if not claimed:
            log.info("component %s from %s refused: already connected", domain, self.address)
            self.close_stream(StreamErrorCondition.CONFLICT, f"another connection serves {domain}")
            return
        self.serving = domain
        self.core.established()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        limits = self._limits
        self.read_bucket = (
            TokenBucket(limits.c2s_rate, limits.c2s_burst, self._loop.time())
            if limits.c2s_rate
            else None
        )
        self.output.element(f"<handshake xmlns='{cs.COMPONENT}'/>".encode())
        log.info("component %s connected from %s", domain, self.address)
        held, self._held_events = self._held_events, []
        self.events(held)
        self._resume(_DECIDING)

    def _refuse(self, domain: str) -> None:
        if self._throttled(domain):
            return
        record = self.hub.ctx.auth_throttle.failed(self.address, domain, self._loop.time())
        self._pause(_DECIDING)
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()  # the answer is due after the delay, whatever it is
        log.info("component %s from %s: wrong handshake", domain, self.address)
        delay = max(self.hub.ctx.config.component_listener.failure_delay, record.delay)
        self._timers.append(
            self._loop.call_later(
                delay,
                self.close_stream,
                StreamErrorCondition.NOT_AUTHORIZED,
                "wrong handshake",
            )
        )

    def _handshake_timeout(self) -> None:
        self.close_stream(StreamErrorCondition.CONNECTION_TIMEOUT, "no handshake in time")

    def protocol_error(self, exc: PeerProtocolError) -> None:
        log.info(
            "component connection from %s (%s): %s %s",
            self.address,
            self.serving or "-",
            exc.condition.value,
            exc.text,
        )
        self.close_stream(exc.condition, exc.text)

    # ------------------------------------------------------------ stanzas, in order

    def _route(self, stanza: Element, to: JID) -> None:
        if self._busy:
            self._queue.append((stanza, to))
            if len(self._queue) >= QUEUE_HIGH_WATER:
                self.pause_reading()
            return
        pending = self._route_now(stanza, to)
        if pending is not None:
            self._busy = True
            self.hub.ctx.spawn(self._drain(pending))

    def _route_now(self, stanza: Element, to: JID) -> Awaitable[None] | None:
        try:
            return route_from_component(
                self.hub.ctx, stanza, to, self.output.element, self.hub.secrets
            )
        except Exception:
            log.exception("routing a stanza from component %s failed", self.serving)
            return None

    async def _drain(self, pending: Awaitable[None]) -> None:
        """Await what the stanza at the head needs, then the queued ones in order."""
        try:
            while True:
                try:
                    await pending
                except Exception:
                    log.exception("routing a stanza from component %s failed", self.serving)
                next_pending = None
                while self._queue and next_pending is None and not self.closed:
                    stanza, to = self._queue.popleft()
                    next_pending = self._route_now(stanza, to)
                if next_pending is None:
                    return
                pending = next_pending
        finally:
            self._busy = False
            if self.closed:
                self._queue.clear()
            self.resume_reading()

    # ------------------------------------------------------------ reading and writing

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        limit = self._limits.max_output_buffer
        if (
            self._paused & WRITE
            and not self._overflowed
            and transport.get_write_buffer_size() > limit
        ):
            self._overflowed = True
            log.warning(
                "closing component %s: more than %d bytes of output unread", self.serving, limit
            )
            self.close_stream(
                StreamErrorCondition.POLICY_VIOLATION,
                "too much output waiting: the component does not read",
            )


def _outcome(task: asyncio.Future[bool]) -> bool:
    """A claim that failed (the shared store unreachable) is a refusal."""
    if task.cancelled() or task.exception() is not None:
        if not task.cancelled():
            log.warning("claiming a component domain failed: %s", task.exception())
        return False
    return task.result()
