"""One BOSH session (XEP-0124, XEP-0206): the `Transport` and `StreamOutput` the
connection driver (`xmpp/c2s.py`) uses, plus the request bookkeeping.

Theory of operation
-------------------
A session is a stream whose input arrives as numbered request bodies and whose
output leaves as responses to held requests.

* Input (§14 "Request IDs").  `rid_next` is the next `rid` to process.  A request
  with `rid_next <= rid < rid_next + requests` is accepted and waits in `waiting`
  until every lower rid has been processed, so payloads reach the driver in rid
  order whatever order HTTP delivered them in.  A higher rid is out of the window
  and a lower one is a retransmission: the cached response is sent again, or, if
  it was never answered, the new HTTP request takes the old one's place (the old
  one, on a connection the client gave up, is answered empty).  A rid too old to
  have a cached response is `item-not-found`.  A gap that stays unfilled for
  `wait` seconds ends the session with `item-not-found` too: the client lost a
  request and cannot get in sync again.
* Holding (§10).  A processed request is held until the stream has output for
  it, until `wait` passes (then it is answered empty), or until the client has
  more than `hold` requests held: the oldest is answered then.  Output is
  coalesced per event-loop turn; with no request held it waits, bounded by
  `[limits] max_output_buffer` (past it: policy-violation, as on TCP).
* Limits (§11, §12).  A request that cannot be processed at once while
  `requests` are already outstanding is `policy-violation`; so is an empty
  request that makes `requests` outstanding less than `polling` seconds after the
  previous one, and a `pause` over `maxpause`.
* Inactivity (§10, §12 `pause`).  While no request is outstanding a timer of
  `inactivity` seconds (or the `pause` asked for) runs; when it fires the stream
  ends with connection-timeout and the session is dropped.
* Timers are lazy: a request answered within the same turn (most are) would
  otherwise create and cancel two timers.  The session keeps one `wait` timer
  for its oldest held request (deadlines follow rid order, all `wait` apart
  from their processing) and one inactivity timer; each remembers when it is
  due, and when it fires it answers what is due and re-arms for what is not
  (the idle period, too, is measured from the moment the session went idle).
* The end.  When the driver ends the stream (`StreamOutput.end`) the terminal
  body (`type='terminate'`, the condition mapped from the stream error) answers
  every outstanding request and the session leaves the store; later requests
  with its sid get `item-not-found`.

Flow control: while the driver has paused reading (or the client is over its
pre-authentication byte rate) in-order requests wait in `waiting` unprocessed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatgate.http import bosh_body
from chatgate.http.bosh_body import RequestBody
from chatgate.randomness import random_bytes
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import PeerProtocolError, StreamErrorCondition
from chatgate.vocabulary.facts import ConnectionFacts
from chatgate.xml.parser import Stanza, StreamClosed, StreamEvent
from chatgate.xml.serialize import escape_attr
from chatgate.xmpp.c2s import C2SConnection, Hibernation, TlsUpgrade
from chatgate.xmpp.framing import StreamError, StreamHeader, qualify

if TYPE_CHECKING:
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)

#: (HTTP status, response body)
Response = tuple[int, bytes]

#: Stanzas one body may carry once authenticated (before: `preauth_stanza_burst`):
#: a client joining hundreds of rooms at login fits; a million empty elements do not.
MAX_CHILDREN = 1000
#: Bytes before authentication beyond one stanza of `preauth_max_stanza_size`: the
#: `<body/>`'s own tags.
PREAUTH_BODY_SLACK = 1024
#: A body's size once authenticated: `[http] max_request_size` is the bound.
MAX_BODY_BYTES = 1 << 62

_FEATURES_OPEN = b"<stream:features>"
_FEATURES_CLOSE = b"</stream:features>"


@dataclass(frozen=True, slots=True)
class SessionParams:
    """What the session-creation response granted (XEP-0124 §7.2)."""

    wait: int
    hold: int
    ver: str
    inactivity: int
    polling: int
    maxpause: int
    content_type: str
    #: the client asked for acknowledgements (§9)
    ack: bool

    @property
    def requests(self) -> int:
        """§7.2: at most `hold` + 1 simultaneous requests."""
        return self.hold + 1


def new_sid() -> str:
    """An unguessable session id: the sid is the only secret of an unauthenticated
    BOSH session (XEP-0124 §7.2).  144 bits from the OS, as `secrets.token_urlsafe(18)`
    gives, but from the batched pool (`randomness.py`): one system call per session
    showed in login profiles."""
    return base64.urlsafe_b64encode(random_bytes(18)).decode("ascii")


class _Exchange:
    """One HTTP request of the session, from arrival to its response."""

    __slots__ = ("body", "deadline", "future", "opens", "rid", "size", "timer")

    def __init__(
        self,
        rid: int,
        body: RequestBody,
        size: int,
        opens: bool,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.rid = rid
        self.body = body
        self.size = size
        #: the session-creation request: its body stands for the stream header
        self.opens = opens
        self.future: asyncio.Future[Response] = loop.create_future()
        #: a waiting request's gap timer (a lower rid is missing)
        self.timer: asyncio.TimerHandle | None = None
        #: loop time when a held request is answered empty (`wait`)
        self.deadline = 0.0

    def answer(self, response: Response) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.future.done():
            self.future.set_result(response)


class BoshStreamOutput:
    """`StreamOutput` for BOSH: elements become children of response bodies, the
    stream header the attributes of the session-creation response, the end a
    `type='terminate'` body."""

    __slots__ = ("_session",)

    def __init__(self, session: BoshSession) -> None:
        self._session = session

    def header(self, header: StreamHeader) -> None:
        self._session.stream_header(header)

    def features(self, children: str) -> None:
        self._session.add_output(qualify(_FEATURES_OPEN + children.encode() + _FEATURES_CLOSE))

    def element(self, data: bytes) -> None:
        self._session.add_output(qualify(data))

    def end(self, error: StreamError | None) -> None:
        self._session.end_stream(error)

    def flush(self) -> None:
        self._session.flush()

    def discard(self) -> None:
        self._session.discard_output()


class BoshSession:
    """One BOSH session: a `Transport` for one `C2SConnection`.  See the module
    docstring for the rules; every public method is called on the event loop."""

    name = "bosh"
    #: no STARTTLS: the HTTP connection is TLS (https://) or not from the start
    tls_upgrade: TlsUpgrade | None = None
    #: one small parser per request body: nothing to free while idle
    hibernation: Hibernation | None = None

    def __init__(
        self,
        ctx: ServerContext,
        sid: str,
        first_rid: int,
        params: SessionParams,
        facts: ConnectionFacts,
        on_close: Callable[[BoshSession], None],
    ) -> None:
        self.ctx = ctx
        self.sid = sid
        self.params = params
        self.facts = facts
        self._on_close = on_close
        self.connection: C2SConnection | None = None
        self.rid_next = first_rid
        self._first_rid = first_rid
        self._waiting: dict[int, _Exchange] = {}
        self._held: dict[int, _Exchange] = {}  # insertion order is rid order
        self._responses: dict[int, Response] = {}
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flush_handle: asyncio.Handle | None = None
        self._header: StreamHeader | None = None
        #: the session-creation body: what a restart body does not repeat comes from it
        self._opening: RequestBody | None = None
        self._attrs_sent = False
        self._terminal: bytes | None = None
        self._terminal_plain: bytes | None = None
        self._expect_restart = False
        self._reading_paused = False
        self._rate_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        #: the held requests' `wait` timer, and when it is due
        self._wait_timer: asyncio.TimerHandle | None = None
        self._wait_due = 0.0
        #: the inactivity timer, when it is due, and since when the session is idle
        #: (None: a request is outstanding) for how long it may be
        self._inactivity: asyncio.TimerHandle | None = None
        self._inactivity_due = 0.0
        self._idle_since: float | None = None
        self._idle_limit = 0.0
        self._next_inactivity = params.inactivity
        self._last_arrival = -1e9
        self._overflowed = False
        self.closed = False
        limits = ctx.config.limits
        #: limits of this session's bodies (bosh.py checks them before parsing):
        #: before authentication those of a pre-authentication stream
        self.max_stanza_bytes = limits.preauth_max_stanza_size
        self.max_body_bytes = limits.preauth_max_stanza_size + PREAUTH_BODY_SLACK
        self.max_children = limits.preauth_stanza_burst

    # ------------------------------------------------------------ Transport

    def output(self, loop: asyncio.AbstractEventLoop) -> BoshStreamOutput:
        return BoshStreamOutput(self)

    def close(self) -> None:
        """The driver is done with the stream: answer what is outstanding (with the
        terminal body, if the stream ended), then leave the store."""
        if self.closed:
            return
        self.closed = True
        self._set_terminal("")
        self._answer_all()
        for timer in (self._inactivity, self._rate_timer, self._flush_handle, self._wait_timer):
            if timer is not None:
                timer.cancel()
        self._inactivity = self._rate_timer = self._flush_handle = self._wait_timer = None
        self._pending = []
        self._on_close(self)

    def restart_stream(self) -> None:
        """After SASL success (XEP-0206 §5): the next body must carry
        `xmpp:restart='true'`; from now on the authenticated stanza limit applies."""
        self._expect_restart = True
        conn = self.connection
        if conn is not None and conn.negotiation.authenticated_user is not None:
            self.max_stanza_bytes = self.ctx.config.limits.max_stanza_size
            self.max_body_bytes = MAX_BODY_BYTES  # [http] max_request_size bounds it
            self.max_children = MAX_CHILDREN

    def charge(self, size: int) -> float:
        """Debit a body's bytes from the connection's read rate before it is parsed;
        the seconds to wait before parsing it (0.0: none)."""
        conn = self.connection
        bucket = conn.read_bucket if conn is not None else None
        if bucket is None:
            return 0.0
        return bucket.take(size, self._loop.time())

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._advance()

    # ------------------------------------------------------------ requests

    async def request(self, body: RequestBody, size: int, *, opens: bool = False) -> Response:
        """Handle one request body of this session; returns its response when due."""
        if self.closed:
            return _item_not_found()
        rid = body.rid
        self._cancel_inactivity()
        if rid < self.rid_next:
            return await self._repeated(rid, body, size)
        if rid >= self.rid_next + self.params.requests:
            self.fail("item-not-found", f"rid {rid} is outside the window")
            return _item_not_found()
        if rid in self._waiting:
            return await self._replace(self._waiting, rid, body, size)
        try:
            self._check_new(rid, body, opens)
        except _Violation as exc:
            self._policy_violation(str(exc))
            return self._terminal_response()
        exchange = _Exchange(rid, body, size, opens, self._loop)
        self._waiting[rid] = exchange
        if rid != self.rid_next:
            # Waits for the missing lower rids; a gap nobody fills ends the session.
            exchange.timer = self._loop.call_later(self.params.wait, self._gap_timeout, rid)
        self._advance()
        return await exchange.future

    async def _repeated(self, rid: int, body: RequestBody, size: int) -> Response:
        """§14.3: a retransmitted request gets the response it had, or, still held,
        takes the held one's place."""
        if rid in self._held:
            return await self._replace(self._held, rid, body, size)
        cached = self._responses.get(rid)
        if cached is not None:
            return cached
        self.fail("item-not-found", f"rid {rid} is no longer known")
        return _item_not_found()

    async def _replace(
        self, table: dict[int, _Exchange], rid: int, body: RequestBody, size: int
    ) -> Response:
        old = table[rid]
        new = _Exchange(rid, old.body, old.size, old.opens, self._loop)
        new.timer, old.timer = old.timer, None
        new.deadline = old.deadline
        table[rid] = new
        old.answer((200, bosh_body.body()))
        return await new.future

    def _check_new(self, rid: int, body: RequestBody, opens: bool) -> None:
        """§11-§12: raises _Violation for too many requests, polling too often or a
        pause over maxpause; BadBody for a malformed attribute."""
        params = self.params
        outstanding = len(self._held) + len(self._waiting)
        if rid != self.rid_next and outstanding + 1 > params.requests:
            raise _Violation(f"more than {params.requests} simultaneous requests")
        pause = body.int_attr("pause")
        if pause is not None and pause > params.maxpause:
            raise _Violation(f"pause {pause} is over maxpause {params.maxpause}")
        empty = (
            not opens
            and not body.stanzas
            and not body.terminate
            and not body.restart
            and pause is None
        )
        if empty:
            now = self._loop.time()
            if (
                params.polling
                and outstanding + 1 >= params.requests
                and now - self._last_arrival < params.polling
            ):
                raise _Violation(f"empty requests more often than every {params.polling} s")
            # Only empty requests count as polls: one right after a request that
            # carried data (or after the session-creation request) is fair.
            self._last_arrival = now
        ack = body.int_attr("ack")
        if ack is not None:
            # §9.1: the client has these responses; their copies are not needed.
            for old in [r for r in self._responses if r <= ack]:
                del self._responses[old]

    def _advance(self) -> None:
        """Process the waiting requests that are next in rid order (unless paused)."""
        while (
            not self.closed
            and not self._reading_paused
            and self._rate_timer is None
            and self.rid_next in self._waiting
        ):
            exchange = self._waiting.pop(self.rid_next)
            self.rid_next += 1
            if exchange.timer is not None:
                exchange.timer.cancel()
                exchange.timer = None
            self._process(exchange)
        self._schedule_flush()

    def _process(self, exchange: _Exchange) -> None:
        """Hand one request's payload to the driver; the request is held from now on."""
        conn = self.connection
        body = exchange.body
        self._held[exchange.rid] = exchange
        exchange.deadline = due = self._loop.time() + self.params.wait
        if self._wait_timer is None:
            self._arm_wait(due)
        pause = body.int_attr("pause")
        if pause is not None:
            # §12: answer everything now and allow a longer silence once.
            self._next_inactivity = max(pause, self.params.inactivity)
        if conn is None or conn.closed:
            return
        events: list[StreamEvent] = []
        if exchange.opens or body.restart:
            self._expect_restart = False
            if exchange.opens:
                self._opening = body
            events.append(body.stream_opened(self._opening))
        elif self._expect_restart and (body.stanzas or body.terminate):
            conn.protocol_error(
                PeerProtocolError(
                    StreamErrorCondition.BAD_FORMAT, "a stream restart (xmpp:restart) is due"
                )
            )
            return
        events.extend(Stanza(el) for el in body.stanzas)
        if body.terminate:
            events.append(StreamClosed())
        if events:
            conn.events(events)
        bucket = conn.read_bucket
        if bucket is not None and exchange.size and not conn.closed:
            loop = self._loop
            wait = bucket.take(exchange.size, loop.time())
            if wait:
                self._rate_timer = loop.call_later(wait, self._rate_over)
        if pause is not None:
            self._answer_all_held()

    def _rate_over(self) -> None:
        self._rate_timer = None
        self._advance()

    def protocol_error(self, error: PeerProtocolError) -> None:
        """A body of this session broke a stream rule (an over-size stanza ...)."""
        if self.connection is not None and not self.connection.closed:
            self.connection.protocol_error(error)

    # ------------------------------------------------------------ output

    def stream_header(self, header: StreamHeader) -> None:
        if self._header is None:
            self._header = header  # a restart's new header has no BOSH form

    def add_output(self, data: bytes) -> None:
        if self.closed or self._terminal is not None:
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        limit = self.ctx.config.limits.max_output_buffer
        if self._pending_bytes > limit and not self._overflowed:
            self._overflowed = True
            log.warning(
                "closing BOSH session from %s: more than %d bytes of output unread",
                self.facts.remote_address or "-",
                limit,
            )
            conn = self.connection
            if conn is not None:
                conn.close_stream(
                    StreamErrorCondition.POLICY_VIOLATION,
                    "too much output waiting: the client does not poll",
                )
            return
        self._schedule_flush()

    def discard_output(self) -> None:
        self._pending = []
        self._pending_bytes = 0

    def end_stream(self, error: StreamError | None) -> None:
        """The stream ends: everything pending, then the terminal condition."""
        if self._terminal is not None:
            return
        condition, inside = bosh_body.condition_for(error.condition if error else None)
        children = b"".join(self._pending)
        if error is not None:
            if inside:
                children += error.element().encode()
            if error.text:
                log.info(
                    "BOSH session %s ends: %s (%s)", self.sid, error.condition.value, error.text
                )
        self._pending = []
        self._pending_bytes = 0
        self._set_terminal(condition, children)
        self._answer_all()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None and not self.closed:
            self._flush_handle = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Answer what can be answered now: pending output to the oldest held
        request, then the oldest ones beyond `hold`; arm inactivity when idle."""
        self._flush_handle = None
        if self._terminal is not None:
            self._answer_all()
            return
        held = self._held
        if self._pending and held:
            self._answer(next(iter(held.values())))
        while len(held) > self.params.hold:
            self._answer(next(iter(held.values())))
        self._arm_inactivity()

    def _answer(self, exchange: _Exchange) -> None:
        """Answer a held request with the pending output (perhaps none)."""
        del self._held[exchange.rid]
        children = b"".join(self._pending)
        self._pending = []
        self._pending_bytes = 0
        attrs = self._first_attrs_if_unsent()
        if self.params.ack and exchange.rid < self.rid_next - 1:
            attrs += f" ack='{self.rid_next - 1}'"
        response = (200, bosh_body.body(children, attrs))
        self._responses[exchange.rid] = response
        for old in [r for r in self._responses if r <= exchange.rid - self.params.requests]:
            del self._responses[old]
        exchange.answer(response)

    def _answer_all_held(self) -> None:
        for exchange in list(self._held.values()):
            self._answer(exchange)

    def _set_terminal(self, condition: str, children: bytes = b"") -> None:
        """The stream is over: this body (and, for a second outstanding request, the
        same without children) answers everything from now on."""
        if self._terminal is None:
            self._terminal = bosh_body.terminate(condition, children, self._first_attrs_if_unsent())
            self._terminal_plain = bosh_body.terminate(condition)

    def _answer_all(self) -> None:
        """Every outstanding request, oldest first, gets the terminal body."""
        terminal = self._terminal
        assert terminal is not None
        plain = self._terminal_plain or terminal
        exchanges = sorted([*self._held.values(), *self._waiting.values()], key=_rid)
        self._held.clear()
        self._waiting.clear()
        for exchange in exchanges:
            response = (200, terminal)
            self._responses[exchange.rid] = response
            exchange.answer(response)
            terminal = plain

    def _terminal_response(self) -> Response:
        return (200, self._terminal_plain or bosh_body.terminate())

    def _first_attrs(self) -> str:
        """The attributes of the session-creation response (XEP-0124 §7.2, XEP-0206 §3)."""
        p = self.params
        header = self._header
        parts = [
            f" sid='{self.sid}'",
            f" wait='{p.wait}'",
            f" requests='{p.requests}'",
            f" hold='{p.hold}'",
            f" inactivity='{p.inactivity}'",
            f" polling='{p.polling}'",
            f" ver='{p.ver}'",
            f" secure='{'true' if self.facts.tls_active else 'false'}'",
        ]
        if p.maxpause:
            parts.append(f" maxpause='{p.maxpause}'")
        if header is not None:
            parts.append(f' from="{escape_attr(header.from_)}" authid="{header.stream_id}"')
        if p.ack:
            parts.append(f" ack='{self._first_rid}'")
        parts.append(
            f" xmlns:xmpp='{bosh_body.XBOSH}' xmpp:version='1.0' xmpp:restartlogic='true'"
            f" xmlns:stream='{ns.STREAMS}'"
        )
        return "".join(parts)

    # ------------------------------------------------------------ timers and ends

    def _arm_wait(self, due: float) -> None:
        self._wait_due = due
        self._wait_timer = self._loop.call_at(due, self._wait_timeout)

    def _wait_timeout(self) -> None:
        """Answer (empty, or with what is pending) the held requests whose `wait` is
        over, oldest first; re-arm for the next one."""
        self._wait_timer = None
        if self.closed:
            return
        now = self._loop.time()
        for exchange in list(self._held.values()):
            if exchange.deadline > now:
                self._arm_wait(exchange.deadline)
                break
            self._answer(exchange)
        self._arm_inactivity()

    def _gap_timeout(self, rid: int) -> None:
        if rid in self._waiting and not self.closed:
            self.fail("item-not-found", f"a request before rid {rid} never came")

    def _arm_inactivity(self) -> None:
        """Nothing is outstanding: the session is idle from now on."""
        if self.closed or self._held or self._waiting or self._idle_since is not None:
            return
        delay, self._next_inactivity = self._next_inactivity, self.params.inactivity
        now = self._loop.time()
        self._idle_since = now
        self._idle_limit = delay
        due = now + delay
        timer = self._inactivity
        if timer is not None:
            if self._inactivity_due <= due:
                return  # it fires first, and re-arms for the rest
            timer.cancel()
        self._inactivity_due = due
        self._inactivity = self._loop.call_at(due, self._inactivity_check)

    def _cancel_inactivity(self) -> None:
        """A request arrived: the session is not idle (its timer, if armed, finds
        that out when it fires)."""
        self._idle_since = None

    def _inactivity_check(self) -> None:
        self._inactivity = None
        since = self._idle_since
        if self.closed or since is None:
            return  # busy: the next idle period arms it again
        due = since + self._idle_limit
        if due > self._loop.time():
            self._inactivity_due = due
            self._inactivity = self._loop.call_at(due, self._inactivity_check)
            return
        self._inactive()

    def _inactive(self) -> None:
        """§10: no request for `inactivity` seconds: the client is gone."""
        conn = self.connection
        log.info("BOSH session %s from %s inactive: ended", self.sid, self.facts.remote_address)
        if conn is not None and not conn.closed:
            conn.close_stream(StreamErrorCondition.CONNECTION_TIMEOUT, "no BOSH request in time")
        self.close()

    def _policy_violation(self, text: str) -> None:
        log.info("BOSH session %s: policy-violation: %s", self.sid, text)
        conn = self.connection
        if conn is not None and not conn.closed:
            conn.close_stream(StreamErrorCondition.POLICY_VIOLATION, text)
        else:
            self._set_terminal("policy-violation")
        self.close()

    def fail(self, condition: str, text: str) -> None:
        """End the session with a BOSH condition that has no stream error (§17.2):
        the driver only learns that the connection is gone."""
        if self.closed:
            return
        log.info("BOSH session %s: %s: %s", self.sid, condition, text)
        self._set_terminal(condition)
        self.close()
        conn = self.connection
        if conn is not None:
            conn.connection_lost()

    def _first_attrs_if_unsent(self) -> str:
        """The session attributes go on the first response only (the creation one:
        it is the first request processed, so the first answered)."""
        if self._attrs_sent:
            return ""
        self._attrs_sent = True
        return self._first_attrs()


def _rid(exchange: _Exchange) -> int:
    return exchange.rid


class _Violation(Exception):
    """A session rule was broken (XEP-0124 `policy-violation`)."""


def _item_not_found() -> Response:
    return (404, bosh_body.terminate("item-not-found"))
