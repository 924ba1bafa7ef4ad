"""XMPP over BOSH (XEP-0124, XEP-0206) for the generator, behaving as Strophe.js does.

A session is a `Connection` whose bytes arrive as the payloads of HTTP responses, so the same
lockstep `expect` and hot-mode `sink` serve it. Negotiation sends one request at a time: the
stanza(s) written since the last request, or an empty body that the server holds until it has
something to say. Once handed over, the session keeps one request held at the server (`hold=1`),
as real clients do, and sends what the scenario writes at once if fewer than `hold + 1` requests
are open, otherwise with the next request: stanzas written meanwhile are batched into one body.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Coroutine
from typing import Any

from bench.loadgen.http import HttpPool
from bench.loadgen.scram import ScramCache
from bench.loadgen.xmpp import DOMAIN, Connection, LoginOptions, XmppError, sasl_and_bind

BOSH_NS = "http://jabber.org/protocol/httpbind"
XBOSH_NS = "urn:xmpp:xbosh"
HOLD = 1
WAIT = 60
#: requests a client may have open at once (XEP-0124 section 11: hold + 1)
MAX_OPEN = HOLD + 1


def _payload(body: bytes) -> tuple[bytes, bool]:
    """The children of a `<body/>` response, and whether it terminates the session."""
    start = body.find(b"<body")
    gt = body.find(b">", start)
    if start < 0 or gt < 0:
        raise XmppError(f"not a BOSH body: {body[:200]!r}")
    tag = body[start:gt]
    terminated = b"terminate" in tag and (b"type='terminate'" in tag or b'type="terminate"' in tag)
    if body[gt - 1] == 0x2F:  # <body .../>
        return b"", terminated
    return body[gt + 1 : body.rfind(b"</body>")], terminated


class BoshSession(Connection):
    """One BOSH session: lockstep `expect` during negotiation, a held request afterwards."""

    __slots__ = ("_client", "_open", "_pending", "_restart", "_rid", "_sid", "ended")
    STANZA_NS = b" xmlns='jabber:client'"

    def __init__(self, client: BoshClient) -> None:
        super().__init__(client.loop)
        self._client = client
        self._rid = random.randrange(1 << 32, 1 << 40)
        self._sid = b""
        self._pending: list[bytes] = []
        self._restart = False
        self._open = 0  # hot-mode requests sent and not yet answered
        self.ended = False

    # framing
    def _body(self, payload: bytes) -> bytes:
        self._rid += 1
        head = b"<body rid='%d' sid='%s' xmlns='%s'" % (self._rid, self._sid, BOSH_NS.encode())
        if self._restart:
            self._restart = False
            head += (
                f" to='{DOMAIN}' xml:lang='en' xmpp:restart='true' xmlns:xmpp='{XBOSH_NS}'"
            ).encode()
        if payload:
            return head + b">" + payload + b"</body>"
        return head + b"/>"

    async def _post(self, body: bytes) -> bytes:
        reply = await self._client.pool.post(body)
        payload, terminated = _payload(reply)
        if terminated:
            self.ended = True
            raise XmppError(f"BOSH session terminated by the server: {reply[:300]!r}")
        return payload

    # session life
    async def create(self) -> None:
        """Session-creation request; what the response carries (often features) is kept."""
        self._rid += 1
        reply = await self._client.pool.post(
            (
                f"<body content='text/xml; charset=utf-8' hold='{HOLD}' rid='{self._rid}' "
                f"to='{DOMAIN}' ver='1.6' wait='{WAIT}' xml:lang='en' xmpp:version='1.0' "
                f"xmlns='{BOSH_NS}' xmlns:xmpp='{XBOSH_NS}'/>"
            ).encode()
        )
        start = reply.find(b"sid=")
        if start < 0:
            raise XmppError(f"no BOSH session: {reply[:300]!r}")
        quote = reply[start + 4 : start + 5]
        self._sid = reply[start + 5 : reply.find(quote, start + 5)]
        payload, terminated = _payload(reply)
        if terminated:
            self.ended = True
            raise XmppError(f"BOSH session refused: {reply[:300]!r}")
        if payload:
            self.data_received(payload)

    async def restart(self) -> None:
        self._restart = True

    async def expect(self, *names: bytes) -> tuple[bytes, bytes]:
        """Send what is pending (or an empty poll) until the named element has arrived."""
        self._want = names
        fut = self._fut = self.loop.create_future()
        if self.buf:
            self._match()
        while not fut.done():
            payload = b"".join(self._pending)
            self._pending.clear()
            got = await self._post(self._body(payload))
            if got:
                self.data_received(got)
        name, element = fut.result()
        return name, element

    # hot mode
    def write(self, data: bytes) -> None:
        self._pending.append(data)
        if self.sink is not None:
            self._pump()

    def send_repeated(self, stanza: bytes, k: int) -> None:
        self.write(stanza * k)

    def hand_over(self, sink: Callable[[bytes], None]) -> None:
        super().hand_over(sink)
        self._pump()

    def _pump(self) -> None:
        """Keep one request held; send pending stanzas whenever a request slot is free."""
        while not self.ended and self._open < MAX_OPEN and (self._pending or self._open == 0):
            payload = b"".join(self._pending)
            self._pending.clear()
            self._open += 1
            self._client.spawn(self._hot_request(self._body(payload)))

    async def _hot_request(self, body: bytes) -> None:
        try:
            payload = await self._post(body)
        except (XmppError, OSError) as e:
            self._open -= 1
            if not self.ended:
                self.ended = True
                self._client.note_error(e)
            return
        except BaseException:
            self._open -= 1
            raise
        self._open -= 1
        if payload and self.sink is not None:
            self.sink(payload)
        self._pump()

    async def terminate(self) -> None:
        """End the session (XEP-0124 section 13) and wait for the server's answer."""
        if self.ended:
            return
        self.ended = True
        self._rid += 1
        body = (
            b"<body rid='%d' sid='%s' type='terminate' xmlns='%s'>"
            b"<presence type='unavailable' xmlns='jabber:client'/></body>"
            % (self._rid, self._sid, BOSH_NS.encode())
        )
        await self._client.pool.post(body)

    def close(self) -> None:
        if not self.ended and self._sid:
            self._client.spawn(self.terminate())
        self.ended = True

    def abort(self) -> None:
        self.ended = True


class BoshClient:
    """Logs accounts in over BOSH; one connection pool and SCRAM cache for all sessions."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, opts: LoginOptions, cache: ScramCache, path: str
    ) -> None:
        self.loop = loop
        self.opts = opts
        self.cache = cache
        self.pool = HttpPool(loop, opts.host, opts.port, path)
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count()
        self.on_error: Callable[[BaseException], None] | None = None

    @property
    def url(self) -> str:
        return self.pool.url

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def note_error(self, e: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(e)

    async def login(self, user: str, pw: str, resource: str) -> BoshSession:
        session = BoshSession(self)
        try:
            await session.create()
            await session.expect(b"stream:features")
            session.jid = await sasl_and_bind(
                session, self.opts.mechanism, self.cache, user, pw, resource
            )
        except BaseException:
            session.abort()
            raise
        return session

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Let terminations in flight finish (bounded), cancel held polls, close the pool."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        self.pool.close()
