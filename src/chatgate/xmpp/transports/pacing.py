"""How a stream socket is read: one slice per loop turn, charged to a byte rate,
paused for independent reasons.

Why it exists: client TCP connections (`tcp.TcpTransport`) and external component
connections (`chatgate.components.connection`) read their sockets under the same
rules, and these rules are easy to get subtly wrong, so they are written once here:

* at most one slice of input (`Consumer.read_slice`) is parsed per loop turn, so
  one connection sending a lot cannot starve the others; the rest of a large read
  waits for the next turn;
* a loop turn parses for a bounded time (`turns.TurnBudget`): connections read
  after it is spent wait for the next turn, first in line, so a busy turn does not
  hold everyone's output back;
* every slice is charged to the peer's token bucket (`Consumer.read_bucket`): a
  peer faster than its byte rate is read more slowly;
* reading pauses for several reasons at once (a bit each in `_paused`: the
  consumer's in-order queue is full, the peer does not read what we send, the rate,
  the slice, and reasons a subclass adds from `FIRST_FREE` on); each is lifted on
  its own and the socket is read again only when none is left, so a slow reader's
  back-pressure never undoes a queue limit, nor the reverse;
* input that arrives while paused (asyncio may have it in flight) is kept, in
  order, in a backlog; the socket stays paused until the backlog has been parsed,
  one slice a turn, so it never grows by more than one read (two for a connection
  waiting for its turn, which is paused only once a second read comes).

It is a mixin, not a helper object: `_feed` is the per-read path of every client
connection, and as a method of the transport itself it costs no call more than
the code it replaced.  The subclass calls `_init_reading` and provides the parser,
the socket and the consumer; it owns everything else: TLS, timers, the close.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, cast

from chatgate.vocabulary.errors import PeerProtocolError
from chatgate.xml.parser import StreamEvent, StreamParseError, XmlStreamParser
from chatgate.xmpp.transports.turns import TurnBudget, turn_budget

if TYPE_CHECKING:
    from chatgate.xmpp.shaper import TokenBucket

# Why reading is paused (a bit each).
QUEUE = 1  # the consumer's in-order queue is full (`pause_reading`)
WRITE = 2  # the peer does not read what we send (`pause_writing`)
RATE = 4  # the peer sent faster than its byte rate
SLICE = 8  # one slice was parsed this loop turn; the rest waits for the next
#: The first bit a subclass may use for reasons of its own.
FIRST_FREE = 16
#: Bytes buffered for a slow reader before asyncio calls `pause_writing` (and its
#: connection stops being read from).
WRITE_HIGH_WATER = 1 << 20


class Consumer(Protocol):
    """What parsed input goes to: the C2S driver (`xmpp.c2s.C2SConnection`), or a
    component connection, which handles its own stream."""

    @property
    def closed(self) -> bool: ...

    @property
    def read_slice(self) -> int:
        """Bytes parsed per loop turn at most."""
        ...

    @property
    def read_bucket(self) -> TokenBucket | None:
        """The peer's byte rate; None: unlimited."""
        ...

    def events(self, events: list[StreamEvent]) -> None: ...

    def protocol_error(self, exc: PeerProtocolError) -> None: ...


class PacedReader:
    """Paced reading for an `asyncio.Protocol` (list it before `asyncio.Protocol`
    in the bases: it provides `pause_writing` and `resume_writing`)."""

    __slots__ = (
        "_backlog",
        "_deferred",
        "_held",
        "_holding",
        "_lingering",
        "_loop",
        "_paused",
        "_rate_timer",
        "_socket_paused",
        "_transport",
        "_turns",
        "reads",
    )

    # The subclass's own state, which the reading uses.
    _parser: XmlStreamParser
    #: what parsed input goes to; None until there is one
    connection: Consumer | None

    def _init_reading(self) -> None:
        """Set the reading state up (from the subclass's `__init__`)."""
        #: the socket, from `_attach`
        self._transport: asyncio.Transport | None = None
        #: reads handed to the parser so far (idleness is judged by its change)
        self.reads = 0
        #: a set of the reason bits
        self._paused = 0
        self._socket_paused = False
        #: input received but not parsed yet (the socket is paused meanwhile, but
        #: for the first read of a wait for the next turn: `TurnBudget`)
        self._backlog: list[bytes] | None = None
        #: the pending resume of a rate pause (one at a time: reading stays paused)
        self._rate_timer: asyncio.TimerHandle | None = None
        #: our side has closed: the peer's last input is read and dropped
        self._lingering = False
        #: hold input unparsed, the socket still read, until the stream restarts
        #: (STARTTLS: plaintext that came with the handshake's last flight)
        self._holding = False
        self._held: list[bytes] | None = None
        #: the loop's parsing budget (from `_attach`), and whether this connection
        #: waits in its queue
        self._turns: TurnBudget | None = None
        self._deferred = False

    def _attach(self, transport: asyncio.BaseTransport) -> str | None:
        """Take the socket and the running loop (in `connection_made`); the peer's
        address, if it has one."""
        # uvloop's transports implement the interface without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._turns = turn_budget(self._loop)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        return str(peer[0]) if isinstance(peer, tuple) else None

    def _feed(self, data: bytes) -> None:
        """Parse one read (or hold it back) and hand the events to the consumer."""
        if not data:
            return
        if self._holding:
            if self._held is None:
                self._held = []
            self._held.append(data)
            return
        conn = self.connection
        if conn is None or conn.closed:
            return
        if self._paused or self._backlog is not None:
            self._hold_back(data)
            return
        turns = self._turns
        if turns is not None and turns.spent():
            # This turn has parsed enough: the rest waits for the next, first in line.
            # The socket is not paused for that (two system calls a time): the next
            # turn serves it before reading any socket, and pauses it only if it
            # must wait longer (`_keep_waiting`).
            self._backlog = [data]
            if not self._deferred:
                self._deferred = True
                turns.defer(self)
            return
        # One slice per loop turn (fairness), charged to the peer's byte rate.
        limit = conn.read_slice
        if len(data) > limit:
            self._hold_back(data[limit:])
            data = data[:limit]
            self._pause(SLICE)
            asyncio.get_running_loop().call_soon(self._resume, SLICE)
        bucket = conn.read_bucket
        if bucket is not None:
            wait = bucket.take(len(data), self._loop.time())
            if wait and not self._paused & RATE:
                self._pause(RATE)
                self._rate_timer = self._loop.call_later(wait, self._resume, RATE)
        self.reads += 1
        try:
            events = self._parser.feed(data)
        except StreamParseError as exc:
            # Stanzas completed before the bad bytes in the same read are processed
            # first, as they would have been had they arrived in an earlier read.
            if exc.events:
                conn.events(exc.events)
            conn.protocol_error(exc)
            return
        except PeerProtocolError as exc:
            conn.protocol_error(exc)
            return
        if events:
            conn.events(events)

    def _stop_reading(self) -> None:
        """The connection is gone: forget what waited and the pending rate resume."""
        self._backlog = None
        self._held = None
        if self._rate_timer is not None:
            self._rate_timer.cancel()
            self._rate_timer = None

    # ------------------------------------------------------------ pause reasons

    def pause_writing(self) -> None:
        # The peer is not reading: stop reading from it too, so it cannot make us
        # buffer; from now on every write checks the output limit.
        self._pause(WRITE)

    def resume_writing(self) -> None:
        self._resume(WRITE)

    def pause_reading(self) -> None:
        """The consumer's in-order queue is full."""
        self._pause(QUEUE)

    def resume_reading(self) -> None:
        self._resume(QUEUE)

    def _pause(self, reason: int) -> None:
        self._paused |= reason
        self._sync_reading()

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self._backlog is not None:
            # The socket stays paused until what waited is parsed: reading on while
            # a backlog drains one slice a turn would let it grow by a read a turn.
            asyncio.get_running_loop().call_soon(self._release_backlog)
        else:
            self._sync_reading()

    def _sync_reading(self) -> None:
        """Read from the socket exactly when there is no reason to pause and nothing
        waits; while lingering, always (the peer's last input is drained)."""
        transport = self._transport
        if transport is None or transport.is_closing() or self._lingering:
            return
        pause = bool(self._paused) or self._backlog is not None
        if pause != self._socket_paused:
            self._socket_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _hold_back(self, data: bytes) -> None:
        if self._backlog is None:
            self._backlog = [data]
        else:
            # A connection waiting for its turn is read on until a second read
            # comes: this pauses it (uvloop reads a ready socket up to 32 times
            # per poll, and each read can be 256 KB).
            self._backlog.append(data)
        self._sync_reading()

    def _release_backlog(self) -> None:
        """Parse what waited while reading was paused, in order; a new pause keeps
        the rest for later (`_feed` appends behind whatever it holds back)."""
        if self._paused or self._backlog is None:
            return  # a reason came back meanwhile: its `_resume` calls again
        backlog, self._backlog = self._backlog, None
        for chunk in backlog:
            self._feed(chunk)
        self._sync_reading()

    def _go_on(self) -> None:
        """Our turn came (`TurnBudget`): parse what waited for it, whatever the
        clock says by now (else a turn whose budget a slow parse had spent would
        serve nobody; the read slice still bounds what is parsed)."""
        self._deferred = False
        turns, self._turns = self._turns, None
        try:
            self._release_backlog()
        finally:
            self._turns = turns

    def _keep_waiting(self) -> None:
        """A turn ran out before our turn came: stop reading the socket until it
        does, so what waits grows by no more than one more read."""
        self._sync_reading()

    def _release_held(self) -> None:
        """Feed what `_holding` kept, now that the stream restarted."""
        held, self._held = self._held or [], None
        for chunk in held:
            self._feed(chunk)
