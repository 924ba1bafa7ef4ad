"""A minimal, fast XMPP client: stream, optional STARTTLS, SASL, bind, then raw bytes.

Theory of operation. Negotiation (RFC 6120 sections 4-7) is lockstep: the client sends one thing
and the server answers with exactly one element, so the client need not parse XML. It scans its
buffer for the opening tag of the element it waits for and for where that element ends (a `/>`
closing the opening tag, or the matching end tag), and returns those bytes. A `<stream:error`
or the end of the stream fails the wait. Once bound, the connection hands every chunk to a
`sink` callback chosen by the scenario (a counter, a latency recorder, an auto-responder), so the
hot path costs one call per chunk read and never builds an element.

Stanzas sent on the hot path are pre-built bytes. The server may re-serialize what it routes
(quotes, attribute order, added `from`), so receivers look only for markers they put into text
content, which servers pass through unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from bench.loadgen.scram import ScramCache, ScramClient, plain_message

DOMAIN = "localhost"
STREAM_HEADER = (
    f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' version='1.0' xml:lang='en' "
    "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
).encode()
STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION_NS = b"urn:ietf:params:xml:ns:xmpp-session"
STREAM_END = b"</stream:stream>"


class XmppError(Exception):
    """The server refused a step or ended the stream."""


@dataclass(frozen=True, slots=True)
class LoginOptions:
    port: int
    mechanism: str = "SCRAM-SHA-1"
    starttls: bool = False
    host: str = "127.0.0.1"


def client_ssl_context() -> ssl.SSLContext:
    # The peers use the harness's self-signed certificate; the benchmark measures TLS cost, not
    # trust, so verification is off (the connection is on loopback).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _element_end(buf: bytes, start: int, name: bytes) -> int:
    """End offset of the element whose opening tag starts at `start`, or -1 if incomplete."""
    gt = buf.find(b">", start)
    if gt < 0:
        return -1
    if buf[gt - 1] == 0x2F:  # "/>": empty element
        return gt + 1
    close = buf.find(b"</" + name + b">", gt)
    return -1 if close < 0 else close + len(name) + 3


def text_of(element: bytes) -> bytes:
    """Character data of a simple element such as <challenge ...>BASE64</challenge>."""
    gt = element.find(b">")
    if element[gt - 1] == 0x2F:
        return b""
    return element[gt + 1 : element.rfind(b"</")]


class Connection(asyncio.Protocol):
    """One client connection: lockstep `expect` during negotiation, a sink afterwards."""

    __slots__ = ("_fut", "_want", "buf", "jid", "loop", "on_lost", "sink", "transport")

    #: what the stanzas this connection sends declare: nothing on a TCP stream (its header
    #: declares jabber:client); a BOSH body or WebSocket message needs it on every stanza
    #: (XEP-0206 section 7, RFC 7395 section 3.3.3)
    STANZA_NS = b""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self._want: tuple[bytes, ...] = ()
        self._fut: asyncio.Future[tuple[bytes, bytes]] | None = None
        self.sink: Callable[[bytes], None] | None = None
        self.on_lost: Callable[[Connection], None] | None = None
        self.jid = ""  # the full JID the server bound

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink(data)
            return
        self.buf += data
        if self._fut is not None:
            self._match()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            fut.set_exception(XmppError(f"connection lost: {exc or 'closed by server'}"))
        if self.on_lost is not None:
            self.on_lost(self)

    # negotiation
    def _match(self) -> None:
        buf = self.buf
        best = -1
        best_name = b""
        for name in self._want:
            i = buf.find(b"<" + name)
            if i >= 0 and (best < 0 or i < best):
                best, best_name = i, name
        if best >= 0:
            end = _element_end(buf, best, best_name)
            if end < 0:
                return
            fut, self._fut = self._fut, None
            self.buf = buf[end:]
            assert fut is not None
            fut.set_result((best_name, buf[best:end]))
            return
        err = buf.find(b"<stream:error")
        if err >= 0 or STREAM_END in buf:
            fut, self._fut = self._fut, None
            assert fut is not None
            fut.set_exception(XmppError(f"stream ended: {buf[max(err, 0) :][:300]!r}"))

    async def expect(self, *names: bytes) -> tuple[bytes, bytes]:
        """Wait for the first of the named elements; return (name, element bytes)."""
        self._want = names
        fut = self._fut = self.loop.create_future()
        if self.buf:
            self._match()
        return await fut

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def send_repeated(self, stanza: bytes, k: int) -> None:
        """`k` copies of one stanza: one write here, k messages on WebSocket, one BOSH body."""
        assert self.transport is not None
        self.transport.write(stanza * k)

    async def restart(self) -> None:
        """Begin a new stream after SASL success (RFC 6120 section 6.4.6)."""
        self.write(STREAM_HEADER)

    async def terminate(self) -> None:
        """End the session as the login scenario does after each login."""
        self.close()

    def hand_over(self, sink: Callable[[bytes], None]) -> None:
        """Switch to hot mode: every later chunk (and what is buffered) goes to `sink`."""
        self.sink = sink
        rest, self.buf = self.buf, b""
        if rest:
            sink(rest)

    def close(self) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(STREAM_END)
            t.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def _sasl_auth(mechanism: str, initial: bytes) -> bytes:
    return (
        f"<auth xmlns='{SASL_NS}' mechanism='{mechanism}'>".encode()
        + base64.b64encode(initial)
        + b"</auth>"
    )


def _sasl_response(data: bytes) -> bytes:
    return f"<response xmlns='{SASL_NS}'>".encode() + base64.b64encode(data) + b"</response>"


def _bind(resource: str, ns: str = "") -> bytes:
    return (
        f"<iq type='set' id='bind1'{ns}><bind xmlns='{BIND_NS}'><resource>{resource}</resource>"
        "</bind></iq>"
    ).encode()


SESSION_IQ = (
    b"<iq type='set' id='sess1'%s><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
)


def _session_required(features: bytes) -> bool:
    """RFC 3921 session establishment only when offered without <optional/> (RFC 6121 app. E)."""
    i = features.find(SESSION_NS)
    if i < 0:
        return False
    end = features.find(b"</session>", i)
    if end < 0:  # <session xmlns='...'/> with no children: an old server that requires it
        return True
    return b"optional" not in features[i:end]


class Client:
    """Logs one account in; shares the loop, SSL context and SCRAM cache across logins."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, opts: LoginOptions, cache: ScramCache
    ) -> None:
        self.loop = loop
        self.opts = opts
        self.cache = cache
        self.ssl = client_ssl_context() if opts.starttls else None

    async def shutdown(self) -> None:
        """Nothing outlives a TCP scenario (the web clients have pools and tasks to end)."""

    async def login(self, user: str, pw: str, resource: str) -> Connection:
        loop = self.loop
        _, conn = await loop.create_connection(
            lambda: Connection(loop), self.opts.host, self.opts.port
        )
        try:
            await self._negotiate(conn, user, pw, resource)
        except BaseException:
            conn.abort()
            raise
        return conn

    async def _negotiate(self, conn: Connection, user: str, pw: str, resource: str) -> None:
        conn.write(STREAM_HEADER)
        await conn.expect(b"stream:features")
        if self.opts.starttls:
            conn.write(STARTTLS)
            name, el = await conn.expect(b"proceed", b"failure")
            if name != b"proceed":
                raise XmppError(f"STARTTLS refused: {el!r}")
            conn.buf = b""
            assert conn.transport is not None
            conn.transport = await self.loop.start_tls(  # type: ignore[assignment]
                conn.transport, conn, self.ssl, server_hostname=DOMAIN
            )
            conn.write(STREAM_HEADER)
            await conn.expect(b"stream:features")
        conn.jid = await sasl_and_bind(conn, self.opts.mechanism, self.cache, user, pw, resource)


async def sasl_and_bind(
    conn: Connection, mechanism: str, cache: ScramCache, user: str, pw: str, resource: str
) -> str:
    """From the first features to a bound session, on any framing; returns the bound JID.

    `conn` is a TCP `Connection` or a web session that subclasses it: `write` sends one
    stanza's bytes, `expect` waits for an element and `restart` begins the new stream after
    SASL (a stream header, a BOSH restart request or a WebSocket `<open/>`).
    """
    if mechanism == "PLAIN":
        conn.write(_sasl_auth("PLAIN", plain_message(user, pw)))
        name, el = await conn.expect(b"success", b"failure")
    else:
        scram = ScramClient(cache, user, pw)
        conn.write(_sasl_auth(mechanism, scram.first()))
        name, el = await conn.expect(b"challenge", b"failure")
        if name == b"challenge":
            conn.write(_sasl_response(scram.final(base64.b64decode(text_of(el)))))
            name, el = await conn.expect(b"success", b"failure")
            if name == b"success":
                scram.verify(base64.b64decode(text_of(el)))
    if name != b"success":
        raise XmppError(f"authentication failed for {user}: {el!r}")
    await conn.restart()
    _, features = await conn.expect(b"stream:features")
    ns = conn.STANZA_NS
    conn.write(_bind(resource, ns.decode()))
    _, el = await conn.expect(b"iq")
    if b"result" not in el[: el.find(b">")]:
        raise XmppError(f"bind failed: {el!r}")
    start = el.find(b"<jid>")
    jid = el[start + 5 : el.find(b"</jid>", start)].decode()
    if _session_required(features):
        conn.write(SESSION_IQ % ns)
        _, el = await conn.expect(b"iq")
        if b"result" not in el[: el.find(b">")]:
            raise XmppError(f"session failed: {el!r}")
    return jid
