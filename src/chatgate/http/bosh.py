"""BOSH (XEP-0124, XEP-0206) at `/http-bind`: the HTTP edge.  It reads and parses
request bodies, creates sessions, finds them by sid and answers with what the
session (`bosh_session.py`) says; bodies are parsed and written by `bosh_body.py`.

Every session is a transport for the one connection driver (`xmpp/c2s.py`), so
negotiation, SASL, limits, brute-force protection and routing are TCP's.  The
connection facts (client address through trusted proxies, TLS) are those of the
session-creation request, for the whole session.

HTTP statuses: 200 for every response the XEP defines, terminal ones included,
except `item-not-found` (unknown sid, rid out of the window: 404) and
`bad-request` (400), as XEP-0124 §17.2 gives for clients that read only the
status; a body over `[http] max_request_size` gets 413.

Clustered, a sid this process does not hold may be another node's: the
request is forwarded there (`elsewhere`, `cluster/bosh.py`), after the local
look-up, which stays the only cost of a local session's request.

GET answers a short text page (200): a person who opens the URL, or a proxy's
health check, learns that this is a BOSH endpoint, as with other servers; it
says nothing that `/.well-known/host-meta` does not already publish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from chatgate.http import bosh_body
from chatgate.http.bosh_body import BadBody, RequestBody
from chatgate.http.bosh_session import (
    PREAUTH_BODY_SLACK,
    BoshSession,
    Response,
    SessionParams,
    new_sid,
)
from chatgate.http.bosh_store import BoshSessions, LocalBoshSessions, SessionsElsewhere
from chatgate.http.connection_limit import RefusalLog
from chatgate.http.options import BoshOptions
from chatgate.vocabulary.errors import PeerProtocolError, StreamErrorCondition
from chatgate.vocabulary.facts import ConnectionFacts
from chatgate.xmpp.c2s import C2SConnection
from chatgate.xmpp.framing import StreamError

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.xmpp.negotiation import NegotiationSettings

log = logging.getLogger(__name__)

#: Seconds a request body may take to arrive once its headers have (a body
#: trickled a byte at a time would otherwise hold its connection for ever).
BODY_TIMEOUT = 20.0
#: Bytes of a body parsed per event-loop turn (a TCP stream's read slice): a 1 MiB
#: body is parsed in 16 turns, others served between them.
SLICE_BYTES = 65_536

_GET_TEXT = (
    "This is the BOSH endpoint (XEP-0124, XEP-0206) of an XMPP server.\n"
    "XMPP clients POST <body/> elements here; there is nothing to see with a browser.\n"
)


class BoshEndpoint:
    """The `/http-bind` routes of the HTTP listener."""

    def __init__(
        self,
        ctx: ServerContext,
        settings: NegotiationSettings,
        options: BoshOptions,
        facts_for: Callable[[web.Request], ConnectionFacts],
        sessions: BoshSessions | None = None,
    ) -> None:
        self.ctx = ctx
        self.settings = settings
        self.options = options
        self.facts_for = facts_for
        self.sessions: BoshSessions = (
            sessions if sessions is not None else LocalBoshSessions(options.max_sessions)
        )
        #: the sessions of the other nodes of a cluster (None: one process)
        self.elsewhere: SessionsElsewhere | None = None
        #: refusals for max_sessions, one line per address a minute (a flood made
        #: one WARNING per request: 14,000 lines in 3 s)
        self._refusals = RefusalLog(
            "BOSH: refused new sessions from %s (%d since the last line): %d sessions live",
            logger=log,
        )

    # ------------------------------------------------------------ routes

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """POST: one request body of a new or existing session."""
        try:
            if request.content.is_eof():
                data = await request.read()  # all there (most are): no timer needed
            else:
                async with asyncio.timeout(BODY_TIMEOUT):
                    data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _reply((413, bosh_body.terminate("policy-violation")))
        except ConnectionError:
            # The client went away mid-body: nobody is left to answer (aiohttp
            # writes nothing to a connection that is gone).
            return _reply((400, bosh_body.terminate("bad-request")))
        except TimeoutError:
            log.info("BOSH: request body from %s too slow: closed", request.remote or "-")
            slow = _reply((408, bosh_body.terminate("bad-request")))
            slow.force_close()
            return slow
        response, content_type = await self.answer(data, lambda: self.facts_for(request))
        return _reply(response, content_type)

    async def handle_get(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=_GET_TEXT, content_type="text/plain", headers={"Cache-Control": "no-store"}
        )

    def close_all(self) -> None:
        """The listener stops: every session ends (`system-shutdown`, if its stream
        was not ended already), held requests are answered, the store is emptied."""
        for session in list(self.sessions):
            conn = session.connection
            if conn is not None and not conn.closed:
                conn.close_stream(StreamErrorCondition.SYSTEM_SHUTDOWN, "the server is stopping")
            session.end_stream(StreamError(StreamErrorCondition.SYSTEM_SHUTDOWN))
            session.close()

    # ------------------------------------------------------------ requests

    async def answer(
        self, data: bytes, facts: Callable[[], ConnectionFacts]
    ) -> tuple[Response, str]:
        """The response to one request body, and its Content-Type (the session's):
        what both HTTP front ends (aiohttp's route, `lane.py`) send back.  `facts`
        gives the connection's facts; it is called only when the body creates a
        session.

        The limits come before the parsing (issue 11): a body naming an unknown sid
        is answered without being parsed; before authentication a body may be
        about `preauth_max_stanza_size` long and hold `preauth_stanza_burst`
        stanzas; a live session's read rate is charged before its body is parsed;
        and a large body is parsed in slices, the event loop serving others
        between them."""
        limits = self.ctx.config.limits
        peeked = bosh_body.peek_sid(data)
        session = None
        if peeked is not None:
            session = self.sessions.get(peeked)
            if session is None:
                if self.elsewhere is not None:
                    forwarded = await self.elsewhere.forward(peeked, data)
                    if forwarded is not None:
                        return forwarded
                return (404, bosh_body.terminate("item-not-found")), bosh_body.CONTENT_TYPE
            max_stanza = session.max_stanza_bytes
            max_body = session.max_body_bytes
            max_children = session.max_children
            if len(data) <= max_body:  # a body over it is refused below, unslept:
                # its bytes are not read further, and a forwarding node's budget
                # for other sessions' requests is not held while it sleeps
                wait = session.charge(len(data))
                if wait:
                    await asyncio.sleep(wait)
        else:
            max_stanza = limits.preauth_max_stanza_size
            max_body = max_stanza + PREAUTH_BODY_SLACK
            max_children = limits.preauth_stanza_burst
        try:
            if len(data) > max_body:
                if session is None:
                    return (413, bosh_body.terminate("policy-violation")), bosh_body.CONTENT_TYPE
                text = f"a body over {max_body} bytes before authentication"
                error = PeerProtocolError(StreamErrorCondition.POLICY_VIOLATION, text)
                raise BadBody(text, error)
            parser = bosh_body.BodyParser(
                data,
                max_stanza_bytes=max_stanza,
                max_depth=limits.max_depth,
                max_children=max_children,
            )
            body = parser.step(SLICE_BYTES)
            while body is None:
                await asyncio.sleep(0)  # others' turn between two slices
                body = parser.step(SLICE_BYTES)
            sid = body.sid
            if sid is None:
                return await self._create(facts(), body, len(data))
            if sid != peeked:
                raise BadBody("the sid attribute could not be read")
            session = self.sessions.get(sid)
            if session is None:
                return (404, bosh_body.terminate("item-not-found")), bosh_body.CONTENT_TYPE
            # charged above, before parsing
            return await session.request(body, 0), session.params.content_type
        except BadBody as exc:
            return self._bad_body(session, exc), bosh_body.CONTENT_TYPE

    def _bad_body(self, session: BoshSession | None, exc: BadBody) -> Response:
        """A body we cannot process.  In a live session, a stanza over the size or
        depth limit ends the stream as on TCP (policy-violation); any other fault
        ends the session with bad-request (XEP-0124 §17.2)."""
        log.info("BOSH: bad request: %s", exc)
        if session is None:
            return (400, bosh_body.terminate("bad-request"))
        error = exc.error
        if error is not None and error.condition is StreamErrorCondition.POLICY_VIOLATION:
            session.protocol_error(error)
            return (200, bosh_body.terminate("policy-violation"))
        session.fail("bad-request", str(exc))
        return (400, bosh_body.terminate("bad-request"))

    async def _create(
        self, facts: ConnectionFacts, body: RequestBody, size: int
    ) -> tuple[Response, str]:
        """XEP-0124 §7.1, XEP-0206 §3: a new session, and its stream's header."""
        options = self.options
        wait = body.int_attr("wait")
        hold = body.int_attr("hold")
        params = SessionParams(
            wait=max(1, min(wait if wait is not None else options.max_wait, options.max_wait)),
            hold=min(hold if hold is not None else 1, options.max_hold),
            ver=_version(body.attrs.get("ver")),
            inactivity=options.inactivity,
            polling=options.polling,
            maxpause=options.max_pause,
            content_type=bosh_body.content_type(body.attrs.get("content")),
            ack="ack" in body.attrs,
        )
        sid = new_sid() if self.elsewhere is None else self.elsewhere.new_sid()
        session = BoshSession(self.ctx, sid, body.rid, params, facts, on_close=self.sessions.remove)
        if not self.sessions.add(session):
            self._refusals.refused(facts.remote_address or "-", len(self.sessions))
            full = StreamError(StreamErrorCondition.RESOURCE_CONSTRAINT, "too many BOSH sessions")
            refusal = bosh_body.terminate("remote-stream-error", full.element().encode())
            return (200, refusal), params.content_type
        session.connection = C2SConnection(self.ctx, session, self.settings)
        return await session.request(body, size, opens=True), params.content_type


def _version(requested: str | None) -> str:
    """§7.2 `ver`: the highest version both sides speak."""
    ours = bosh_body.VERSION
    major, _, minor = (requested or "").partition(".")
    if bosh_body.is_number(major) and bosh_body.is_number(minor):
        theirs = (int(major), int(minor))
        if theirs < ours:
            return f"{theirs[0]}.{theirs[1]}"
    return f"{ours[0]}.{ours[1]}"


def _reply(response: Response, content_type: str = bosh_body.CONTENT_TYPE) -> web.Response:
    status, data = response
    return web.Response(
        status=status,
        body=data,
        headers={"Content-Type": content_type, "Cache-Control": "no-store"},
    )
