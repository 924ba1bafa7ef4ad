"""Hostile clients against the listener's lane (http/lane.py, http/lane_websocket.py,
http/request_head.py, http/ws_frames.py): the HTTP/1.x and RFC 6455 code in front of
aiohttp on both web ports.

What the lane must hold to (docs/security.md, "Web transports"): no request is
framed one way by the lane and another by aiohttp (so nothing can be smuggled
between them), every answer is the precise HTTP status or WebSocket close code,
memory per peer stays bounded whatever the peer sends or fails to read, other
clients keep their share of the event loop, nothing is logged as a traceback, and
nothing is left behind (sessions, connections, per-address counts).

The attackers speak raw bytes over blocking sockets, on the plain port and, where
TLS changes the path (`http/tls.py` sits between the socket and the lane), on the
HTTPS port too.  The helpers of `test_web_attacks.py` measure "not slowed down"
(`under_attack`: an honest client's ping round trips over TCP and WebSocket) and
"bounded" (the server's resident memory).  Timeouts of 15 and 20 s are checked
in-process with shorter values, and the lane's flow control with a stand-in
transport (the last tests), so that every test here stays within a few seconds.

Notes.  aiohttp logs every request its parser refuses at ERROR with a traceback
(`aiohttp.server`, "Error handling request"), as it did before the lane; the
traceback checks here leave those records out (`tracebacks`).  aiohttp also
accepts WebSocket versions 7 and 8 and HTTP/1.0 handshakes, which the lane
leaves to it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RunningServer
from tests.e2e.flood import rss_kib
from tests.e2e.test_web_attacks import (
    OPEN,
    PING_BOUND_MS,
    RSS_BOUND_KIB,
    LogWindow,
    RawWs,
    _established,
    under_attack,
)
from tests.e2e.web import start_web_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: `[http] max_request_size` of the test server: small, so that the lane's read
#: backlog (one head and one largest body) is small and quickly reached
MAX_REQUEST = 65_536
BACKLOG = 8_192 + MAX_REQUEST
HTTPBIND = "http://jabber.org/protocol/httpbind"
PREFLIGHT = (
    b"OPTIONS /http-bind HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n"
    b"Access-Control-Request-Method: POST\r\n\r\n"
)
HOST_META = b"GET /.well-known/host-meta HTTP/1.1\r\nHost: x\r\n\r\n"
CLOSE_FRAMING = b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    # As test_web_attacks' server (per-address limits lifted, small output cap,
    # c2s_rate off), plus HTTPS and a small max_request_size.
    srv = start_web_server(
        tmp_path_factory.mktemp("laneattacks"),
        f"max_request_size = {MAX_REQUEST}\n[http.bosh]\nmax_sessions = 300\n"
        "[http.chat]\nenabled = false\n",
        auth="allow_plain_without_tls = true\nauth_timeout = 3\n",
        limits="max_preauth_connections_per_address = 100000\nmax_output_buffer = 262144\n"
        "c2s_rate = 0\n",
        https=True,
        plain_c2s=True,
    )
    for name in ("alice", "bob", "mallory", "victim"):
        srv.add_user(name, f"{name}-password")
    yield srv
    assert srv.stop() == 0, srv.log_text()
    assert not tracebacks(srv.log_text())


def tracebacks(text: str) -> list[str]:
    """The log records of `text` that carry a traceback, but for aiohttp's own
    record of each request its parser refuses (it logs every one at ERROR with a
    traceback, as it did before the lane; see the module's notes)."""
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} )", text)
    return [
        r
        for r in records
        if "Traceback" in r
        and not ("aiohttp.server: Error handling request" in r and "aiohttp.http_exceptions." in r)
    ]


# ---------------------------------------------------------------- raw clients


def connect(server: RunningServer, *, tls: bool = False, timeout: float = 5.0) -> socket.socket:
    """A socket to the plain HTTP port, or a TLS one to the HTTPS port."""
    port = server.https_port if tls else server.http_port
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if not tls:
        return sock
    context = ssl.create_default_context(cafile=str(server.certificate))
    return context.wrap_socket(sock, server_hostname="localhost")


def read_until_closed(sock: socket.socket, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or `timeout` passes
    (False)."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, False
        except (ConnectionResetError, ssl.SSLError):
            return data, True
        if not chunk:
            return data, True
        data += chunk


def responses(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """The HTTP responses in `data`, each (status, head, body), framed by their
    Content-Length (none: no body, as for 100 and 204)."""
    found = []
    while data.startswith(b"HTTP/1."):
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        size = int(length.group(1)) if length else 0
        found.append((int(head.split(b" ")[1]), head, rest[:size]))
        data = rest[size:]
    return found


def exchange(
    server: RunningServer, raw: bytes, *, tls: bool = False, timeout: float = 3.0
) -> tuple[list[tuple[int, bytes, bytes]], bool]:
    """Send `raw` on a new connection; the responses and whether the server closed."""
    with connect(server, tls=tls) as sock:
        sock.sendall(raw)
        data, closed = read_until_closed(sock, timeout)
    return responses(data), closed


def by_lane(head: bytes) -> bool:
    """The lane's responses do not name the server; aiohttp's do."""
    return b"\r\nserver:" not in head.lower()


def post(body: bytes, headers: bytes = b"", version: bytes = b"1.1") -> bytes:
    return (
        b"POST /http-bind HTTP/"
        + version
        + b"\r\nHost: x\r\nContent-Type: text/xml\r\n"
        + headers
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def unknown_sid(rid: int = 5) -> bytes:
    return f"<body rid='{rid}' sid='AAAAAAAAAAAAAAAAAAAAAAAA' xmlns='{HTTPBIND}'/>".encode()


def handshake(
    headers: bytes | None = None, *, extra: bytes = b"", version: bytes = b"1.1"
) -> bytes:
    key = base64.b64encode(os.urandom(16))
    if headers is None:
        headers = (
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n"
        )
    return b"GET /xmpp-websocket HTTP/" + version + b"\r\nHost: x\r\n" + headers + b"\r\n" + extra


def frame(
    payload: bytes, opcode: int = 1, *, fin: bool = True, mask: bytes = b"\x11\x22\x33\x44"
) -> bytes:
    """One client frame with a real mask (`ws_frame` uses the zero mask)."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_code(data: bytes) -> int | None:
    """The code of the server's close frame at the end of `data` (None: none)."""
    found = re.search(rb"\x88\x02(..)$", data, re.S)
    return struct.unpack("!H", found.group(1))[0] if found else None


def ws_over(sock: socket.socket) -> RawWs:
    """`RawWs`'s reading and login on a socket of our own (TLS, or a small receive
    buffer), after the lane's handshake."""
    sock.sendall(handshake())
    ws = RawWs.__new__(RawWs)
    ws.sock = sock
    ws.buffer = b""
    answer = ws.expect(rb"^.*?\r\n\r\n").group(0)
    assert answer.startswith(b"HTTP/1.1 101 ") and by_lane(answer), answer
    return ws


def send_for(sock: socket.socket, chunk: bytes, seconds: float) -> int:
    """Send `chunk` again and again for `seconds`, never splitting it (unlike
    `flood`, which may resend a chunk it sent in part and break the framing);
    return the bytes sent.  Stops when the server stops reading or closes.  The
    socket's own mode is left alone: another thread may be reading it."""
    sent = 0
    view = memoryview(b"")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not view:
            view = memoryview(chunk)
        _, writable, _ = select.select([], [sock], [], 0.1)
        if not writable:
            continue
        try:
            n = sock.send(view, socket.MSG_DONTWAIT)
        except (BlockingIOError, TimeoutError):
            continue
        except OSError:
            break
        view = view[n:]
        sent += n
    return sent


def wait_until_gone(server_port: int, client_port: int, seconds: float) -> bool:
    """Whether the server let go of the connection from `client_port` in time."""
    deadline = time.monotonic() + seconds
    while _established(server_port, client_port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# ---------------------------------------------------------------- HTTP: framing


#: (name, request after a lane request, the statuses expected for both): every
#: request the lane does not frame itself goes to aiohttp from its first byte, so
#: the request hidden in the body (host-meta, 200) is answered only when a single
#: strict parser says it is a request of its own.
SMUGGLE = HOST_META.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
DESYNC = [
    ("cl-te", b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n", [400]),
    ("te-cl", b"Transfer-Encoding: chunked\r\nContent-Length: 60\r\n", b"0\r\n\r\n", [400]),
    ("te-odd", b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n", [400]),
    ("te-tab", b"Transfer-Encoding:\tchunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n", [400]),
    ("te-space", b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n", [400]),
    (
        "te-fold",
        b"Content-Length: 5\r\nX: y\r\n Transfer-Encoding: chunked\r\n",
        b"0\r\n\r\n",
        [400],
    ),
    ("te-upper", b"TRANSFER-ENCODING: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n", [400]),
    ("te-only", b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", [400, 200]),
    ("cl-twice-same", b"Content-Length: 5\r\nContent-Length: 5\r\n", b"0\r\n\r\n", [400]),
    ("cl-twice", b"Content-Length: 0\r\nContent-Length: 5\r\n", b"0\r\n\r\n", [400]),
    ("cl-list", b"Content-Length: 5, 5\r\n", b"0\r\n\r\n", [400]),
    ("cl-space-colon", b"Content-Length : 5\r\n", b"0\r\n\r\n", [400]),
    ("cl-plus", b"Content-Length: +5\r\n", b"0\r\n\r\n", [400]),
    ("cl-hex", b"Content-Length: 0x5\r\n", b"0\r\n\r\n", [400]),
    ("cl-zeros", b"Content-Length: 0005\r\n", b"<b/>x", [400, 200]),
    ("cl-huge", b"Content-Length: 99999999999999999999\r\n", b"0\r\n\r\n", [400]),
    ("nul", b"X: a\0b\r\nContent-Length: 5\r\n", b"0\r\n\r\n", [400]),
    ("bare-cr", b"X: a\rb\r\nContent-Length: 5\r\n", b"0\r\n\r\n", [400]),
    ("expect", b"Expect: 100-continue\r\nContent-Length: 5\r\n", b"0\r\n\r\n", [100, 400, 200]),
    ("two-hosts", b"Host: y\r\nContent-Length: 5\r\n", b"0\r\n\r\n", [400]),
]


@pytest.mark.parametrize(
    ("name", "headers", "body", "statuses"), DESYNC, ids=[c[0] for c in DESYNC]
)
def test_odd_framing_after_a_lane_request_goes_to_aiohttp_whole(
    server: RunningServer, name: str, headers: bytes, body: bytes, statuses: list[int]
) -> None:
    log = LogWindow(server)
    odd = b"POST /http-bind HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + body + SMUGGLE
    answers, _ = exchange(server, post(b"<body/>") + odd, timeout=1.5)
    # The lane's own 400 (a <body/> without rid), then aiohttp's answers.
    assert [a[0] for a in answers] == [400, *statuses], (name, answers)
    # Leading zeros are digits to both parsers: the lane takes that one itself.
    lane = [True, True, False] if name == "cl-zeros" else [True] + [False] * len(statuses)
    assert [by_lane(head) or status == 100 for status, head, _ in answers] == [
        x or s == 100 for x, s in zip(lane, [400, *statuses], strict=True)
    ], answers
    assert not tracebacks(log.text())
    # handed over from outside the lane's own exception: aiohttp's parse errors do
    # not carry it (nor the frame holding the lane's buffer) as their context
    assert "NotOurs" not in log.text()


@pytest.mark.parametrize(
    ("name", "raw", "statuses"),
    [
        ("bare-lf", b"POST /http-bind HTTP/1.1\nHost: x\nContent-Length: 5\n\n0\r\n\r\n", [400]),
        (
            "http-1.2",
            b"POST /http-bind HTTP/1.2\r\nHost: x\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            [400],
        ),
        ("no-host", b"POST /http-bind HTTP/1.1\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", [400]),
        (
            "lower-method",
            b"post /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            [400],
        ),
        # consistent with a single parser: the request and the next are both answered
        (
            "absolute-form",
            b"POST http://x/http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            [400, 200],
        ),
        (
            "two-spaces",
            b"POST  /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            [400, 200],
        ),
        (
            "leading-crlf",
            b"\r\nPOST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            [400, 200],
        ),
        (
            "preflight-with-body",
            b"OPTIONS /http-bind HTTP/1.1\r\nHost: x\r\nAccess-Control-Request-Method: POST\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            [204, 200],
        ),
        (
            "handshake-with-body",
            handshake(b"Content-Length: 5\r\n", extra=b"0\r\n\r\n"),
            [400, 200],
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_odd_request_lines_go_to_aiohttp_whole(
    server: RunningServer, name: str, raw: bytes, statuses: list[int]
) -> None:
    answers, _ = exchange(server, post(b"<body/>") + raw + SMUGGLE, timeout=1.5)
    assert [a[0] for a in answers] == [400, *statuses], (name, answers)
    assert by_lane(answers[0][1]) and not any(by_lane(a[1]) for a in answers[1:]), answers


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_lane_then_aiohttp_then_lane_are_answered_in_order(
    server: RunningServer, tls: bool
) -> None:
    """Pipelined: a lane request, an aiohttp request, then requests the lane would
    take: from the handed-over request on, aiohttp answers every one, in order."""
    raw = (
        post(unknown_sid())
        + HOST_META
        + post(unknown_sid(6))
        + PREFLIGHT
        + post(unknown_sid(7), b"Connection: close\r\n")
    )
    answers, closed = exchange(server, raw, tls=tls)
    assert [a[0] for a in answers] == [404, 200, 404, 204, 404], answers
    assert [by_lane(a[1]) for a in answers] == [True, False, False, False, False]
    assert all(b"item-not-found" in a[2] for a in answers if a[0] == 404)
    assert closed


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_many_pipelined_preflights_are_all_answered(server: RunningServer, tls: bool) -> None:
    """Preflights are answered at once, one after the other: 2,000 of them in one
    send must not nest one call per request (the lane recursed and died of a
    RecursionError, with a traceback, after a few hundred)."""
    log = LogWindow(server)
    last = PREFLIGHT.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    answers, closed = exchange(server, PREFLIGHT * 2000 + last, tls=tls, timeout=8)
    assert len(answers) == 2001 and {a[0] for a in answers} == {204}, len(answers)
    assert b"Connection: close" in answers[-1][1]
    assert closed
    assert not tracebacks(log.text()) and "RecursionError" not in log.text()


def test_preflight_pipelining_does_not_stall_others(server: RunningServer) -> None:
    """Three connections pipeline preflights as fast as they can (and read the
    answers): the lane answers them at once, one loop turn's worth at a time."""
    log = LogWindow(server)
    burst = PREFLIGHT * 500

    def attack() -> None:
        def one() -> None:
            with connect(server) as sock:
                reader = threading.Thread(target=read_until_closed, args=(sock, 4.0), daemon=True)
                reader.start()
                send_for(sock, burst, 3.0)
                reader.join(5)

        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)

    tcp_ms, ws_ms, grown = under_attack(server, threading.Thread(target=attack))
    assert tcp_ms < PING_BOUND_MS and ws_ms < PING_BOUND_MS, (tcp_ms, ws_ms)
    assert grown < RSS_BOUND_KIB
    assert not tracebacks(log.text())


def test_http_1_0_without_keep_alive_gets_one_answer(server: RunningServer) -> None:
    answers, closed = exchange(server, post(unknown_sid(), version=b"1.0") + PREFLIGHT)
    assert [a[0] for a in answers] == [404] and closed
    assert b"Connection: close" in answers[0][1]


def test_http_1_0_keep_alive_is_kept_and_said(server: RunningServer) -> None:
    keep = b"Connection: keep-alive\r\n"
    answers, closed = exchange(
        server, post(unknown_sid(), keep, b"1.0") + post(unknown_sid(6), b"", b"1.0"), timeout=1.5
    )
    assert [a[0] for a in answers] == [404, 404] and closed
    assert b"Connection: keep-alive" in answers[0][1]
    assert b"Connection: close" in answers[1][1]


def test_connection_close_in_any_case_ends_the_connection(server: RunningServer) -> None:
    answers, closed = exchange(
        server, post(unknown_sid(), b"connection: Keep-Alive, CLOSE\r\n") + PREFLIGHT
    )
    assert [a[0] for a in answers] == [404] and closed


# ---------------------------------------------------------------- HTTP: sizes


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_body_over_the_limit_gets_413_and_is_not_read_as_requests(
    server: RunningServer, tls: bool
) -> None:
    """413 at once (from the head alone); what follows, requests included, is read
    and dropped for at most LINGER (2 s), and the answer survives the close."""
    log = LogWindow(server)
    size = MAX_REQUEST + 1
    with connect(server, tls=tls) as sock:
        sock.sendall(b"POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        # the client goes on sending its body, with requests hidden in it
        sock.sendall((HOST_META * (size // len(HOST_META) + 1))[:size] + HOST_META)
        started = time.monotonic()
        data, closed = read_until_closed(sock, 5)
    answers = responses(data)
    assert [a[0] for a in answers] == [413], answers
    assert b"policy-violation" in answers[0][2] and b"Connection: close" in answers[0][1]
    assert closed and time.monotonic() - started < 3
    assert "over max_request_size" in log.text()


def test_a_refused_body_never_sent_lingers_two_seconds(server: RunningServer) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999\r\n\r\n"
        )
        started = time.monotonic()
        data, closed = read_until_closed(sock, 5)
        took = time.monotonic() - started
    assert [a[0] for a in responses(data)] == [413]
    assert closed and 1.5 < took < 3.5, took


def test_a_huge_head_without_an_end_is_refused_and_bounded(server: RunningServer) -> None:
    """1 MB of header lines and no blank line: the lane gives up at 8 KiB and aiohttp
    refuses it (431/400); the server neither keeps nor reads the rest."""
    log = LogWindow(server)
    before = rss_kib(server.process.pid)
    with connect(server) as sock:
        sock.sendall(b"POST /http-bind HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(OSError):
            send_for(sock, b"X-Filler: " + b"a" * 50 + b"\r\n", 1.0)
        data, closed = read_until_closed(sock, 3)
    answers = responses(data)
    assert answers and answers[0][0] in (400, 431), data[:200]
    assert closed
    assert rss_kib(server.process.pid) - before < 8 * 1024
    assert not tracebacks(log.text())


def test_pipelining_without_reading_is_bounded(server: RunningServer) -> None:
    """A peer pipelines requests and never reads the answers: the lane stops
    answering while the socket's write buffer is full and stops reading past one
    head and one largest body, so the peer cannot push more than the kernel's
    buffers and that backlog; others keep their share."""
    log = LogWindow(server)
    sent = []

    def attack() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.http_port))
        try:
            sent.append(send_for(sock, post(unknown_sid()) * 50, 3.0))
        finally:
            sock.close()

    tcp_ms, ws_ms, grown = under_attack(server, threading.Thread(target=attack))
    assert tcp_ms < PING_BOUND_MS and ws_ms < PING_BOUND_MS, (tcp_ms, ws_ms)
    assert grown < RSS_BOUND_KIB
    # What the peer managed to send: kernel buffers (a few MB on loopback) and the
    # lane's backlog, not 3 s of loopback speed (GBs).
    assert sent and sent[0] < 32 * 1024 * 1024, sent
    assert not tracebacks(log.text())


# ---------------------------------------------------------------- WebSocket: handshake


HS_BASE = [
    b"Upgrade: websocket",
    b"Connection: Upgrade",
    b"Sec-WebSocket-Version: 13",
    b"Sec-WebSocket-Protocol: xmpp",
]


def _headers(lines: list[bytes], key: bytes | None = None) -> bytes:
    key = key if key is not None else base64.b64encode(os.urandom(16))
    return b"".join(line + b"\r\n" for line in [*lines, b"Sec-WebSocket-Key: " + key])


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        ("upper-case-names", _headers([line.upper() for line in HS_BASE[:3]] + [HS_BASE[3]])),
        (
            "token-lists",
            _headers(
                [
                    b"Upgrade: foo/1, WebSocket",
                    b"Connection: keep-alive, UPGRADE",
                    b"Sec-WebSocket-Version: 13",
                    b"Sec-WebSocket-Protocol: chat, xmpp",
                ]
            ),
        ),
        ("query", None),
    ],
)
def test_handshake_variants_the_lane_takes(
    server: RunningServer, name: str, headers: bytes | None
) -> None:
    raw = handshake(headers, extra=frame(OPEN))
    if name == "query":
        raw = raw.replace(b"/xmpp-websocket ", b"/xmpp-websocket?x=1 ")
    with connect(server) as sock:
        sock.sendall(raw)
        data, _ = read_until_closed(sock, 1.5)
    head = data.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 101 ") and by_lane(head), data[:300]
    accept = re.search(rb"Sec-WebSocket-Accept: (\S+)", head)
    assert accept is not None
    assert b"Sec-WebSocket-Protocol: xmpp" in head
    # The frame sent in the same packet as the handshake was read: features came.
    assert b"<stream:features" in data


def test_the_accept_key_is_rfc_6455s(server: RunningServer) -> None:
    # RFC 6455 §1.3's own example key and answer
    headers = _headers(HS_BASE, b"dGhlIHNhbXBsZSBub25jZQ==")
    with connect(server) as sock:
        sock.sendall(handshake(headers))
        data, _ = read_until_closed(sock, 1.0)
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in data


@pytest.mark.parametrize(
    ("name", "headers"),
    [
        ("no-key", b"".join(line + b"\r\n" for line in HS_BASE)),
        ("short-key", _headers(HS_BASE, base64.b64encode(b"x" * 15))),
        ("bad-base64-key", _headers(HS_BASE, b"!!!!!!!!!!!!!!!!!!!!!!!!")),
        ("no-subprotocol", _headers(HS_BASE[:3])),
        ("upgrade-h2c", _headers([b"Upgrade: h2c", *HS_BASE[1:]])),
        ("no-connection-upgrade", _headers([HS_BASE[0], b"Connection: keep-alive", *HS_BASE[2:]])),
    ],
)
def test_bad_handshakes_are_refused_with_400(
    server: RunningServer, name: str, headers: bytes
) -> None:
    answers, _ = exchange(server, handshake(headers, extra=frame(OPEN)), timeout=1.0)
    assert answers and answers[0][0] == 400, (name, answers)
    assert not by_lane(answers[0][1])  # aiohttp judged it


# ---------------------------------------------------------------- WebSocket: frames


def ws_session(server: RunningServer, *, tls: bool = False, login: bool = False) -> RawWs:
    """A WebSocket with its stream open; logged in (as mallory) with `login`, where
    the pre-authentication byte rate (16 KiB/s) would slow the test down."""
    ws = ws_over(connect(server, tls=tls))
    if login:
        ws.login("mallory", "mallory-password", f"r{time.monotonic_ns()}")
    else:
        ws.send(OPEN)
        ws.expect(rb"</stream:features>")
    return ws


@pytest.mark.parametrize(
    ("name", "wire", "code"),
    [
        ("close-1005", frame(struct.pack("!H", 1005), 8), 1002),
        ("close-1006", frame(struct.pack("!H", 1006), 8), 1002),
        ("close-1015", frame(struct.pack("!H", 1015), 8), 1002),
        ("close-999", frame(struct.pack("!H", 999), 8), 1002),
        ("close-2999", frame(struct.pack("!H", 2999), 8), 1002),
        ("close-5000", frame(struct.pack("!H", 5000), 8), 1002),
        ("close-one-byte", frame(b"\x03", 8), 1002),
        ("close-reason-not-utf8", frame(struct.pack("!H", 1000) + b"\xc3\x28", 8), 1007),
        ("close-4999-fine", frame(struct.pack("!H", 4999) + "fin \u00e9".encode(), 8), 1000),
        ("close-empty-fine", frame(b"", 8), 1000),
        ("unmasked", b"\x81\x05hello", 1002),
        ("rsv1", bytes((0xC1,)) + frame(b"x")[1:], 1002),
        ("rsv3", bytes((0x91,)) + frame(b"x")[1:], 1002),
        ("opcode-3", frame(b"x", 3), 1002),
        ("opcode-b", frame(b"x", 0xB), 1002),
        ("long-ping", frame(b"x" * 126, 9), 1002),
        ("fragmented-ping", frame(b"x", 9, fin=False), 1002),
        ("stray-continuation", frame(b"x", 0), 1002),
        ("text-inside-text", frame(b"<a", fin=False) + frame(b"/>"), 1002),
        ("not-utf8", frame(b"\xff\xfe"), 1007),
        ("utf8-cut-by-fragments", frame("é".encode()[:1], fin=False) + frame(b"x", 0), 1007),
        ("surrogate", frame(b"\xed\xa0\x80"), 1007),
        ("huge-length", struct.pack("!BBQ", 0x81, 0xFF, 1 << 62) + b"mask", 1009),
        ("top-bit-length", struct.pack("!BBQ", 0x81, 0xFF, 1 << 63) + b"mask", 1002),
        ("fragments-over-the-limit", b"", 1009),
    ],
)
def test_frames_that_break_rfc_6455_get_their_close_code(
    server: RunningServer, name: str, wire: bytes, code: int
) -> None:
    """The right close code, then the server closes the socket itself: no waiting
    for the client's close frame after a protocol error (RFC 6455 §7.1.7)."""
    if name == "fragments-over-the-limit":
        # twice max_stanza_size (256 KiB) is the framing's limit: 512 KiB in pieces
        wire = frame(b"a" * 60_000, fin=False) + frame(b"a" * 60_000, 0, fin=False) * 9
    ws = ws_session(server, login=True)
    try:
        started = time.monotonic()
        with contextlib.suppress(OSError):
            ws.sock.sendall(wire)
        data, closed = read_until_closed(ws.sock, 3)
        assert close_code(data) == code, (name, data[-80:])
        assert closed and time.monotonic() - started < 2, name
    finally:
        ws.close()


def test_text_after_close_is_not_handled(server: RunningServer) -> None:
    """RFC 7395 §3.6: after the client's <close/>, nothing more is processed, even
    what came in the same packet."""
    ws = ws_session(server)
    try:
        ping = b"<iq type='get' id='late' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ws.sock.sendall(frame(CLOSE_FRAMING) + frame(ping) + frame(struct.pack("!H", 1000), 8))
        data, closed = read_until_closed(ws.sock, 3)
        assert b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>" in data
        assert b"late" not in data
        assert close_code(data) == 1000 and closed
    finally:
        ws.close()


def test_fragment_flood_is_bounded_and_does_not_stall_others(server: RunningServer) -> None:
    """A message opened and continued with empty (or one-byte) fragments, for ever:
    the fragments must not be kept one object each (8+ bytes of memory per 6
    bytes sent, without end when they are empty), and their reading counts
    against the connection's share like any other bytes."""
    log = LogWindow(server)

    def attack() -> None:
        ws = ws_session(server)
        try:
            ws.sock.sendall(frame(b"<message>", fin=False))
            send_for(ws.sock, frame(b"", 0, fin=False) * 5000, 3.0)
        finally:
            ws.close()

    tcp_ms, ws_ms, grown = under_attack(server, threading.Thread(target=attack))
    assert tcp_ms < PING_BOUND_MS and ws_ms < PING_BOUND_MS, (tcp_ms, ws_ms)
    assert grown < 16 * 1024, grown
    assert not tracebacks(log.text())


def test_one_byte_fragments_up_to_the_limit_cost_their_bytes(server: RunningServer) -> None:
    """Up to the framing's limit (512 KiB here) in one-byte fragments: what the
    server holds is the message's bytes, not an object per fragment."""
    ws = ws_session(server, login=True)
    try:
        before = rss_kib(server.process.pid)
        ws.sock.sendall(frame(b"<", fin=False))
        one = frame(b"a", 0, fin=False)
        # 400,000 fragments: 2.8 MB on the wire, a 400 KB message
        for _ in range(40):
            ws.sock.sendall(one * 10_000)
        # a PING between fragments: its PONG says every fragment before it was read
        ws.sock.sendall(frame(b"read", 9))
        ws.expect(rb"\x8a\x04read")
        grown = rss_kib(server.process.pid) - before
        assert grown < 8 * 1024, grown
    finally:
        ws.close()


def test_a_ping_flood_is_closed_with_1008(server: RunningServer) -> None:
    ws = ws_session(server)
    try:
        with contextlib.suppress(OSError):
            ws.sock.sendall(frame(b"p", 9) * 200)
        data, closed = read_until_closed(ws.sock, 3)
        assert b"policy-violation" in data
        assert close_code(data) == 1008 and closed
        assert data.count(b"\x8a\x01p") <= 60  # the burst's PONGs, not one per PING
    finally:
        ws.close()


def test_control_frames_between_fragments_are_answered(server: RunningServer) -> None:
    ws = ws_session(server, login=True)
    try:
        iq = b"<iq type='get' id='frag' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        wire = frame(iq[:10], fin=False) + frame(b"hi", 9)
        wire += frame(iq[10:30], 0, fin=False) + frame(b"", 0xA) + frame(iq[30:], 0)
        ws.sock.sendall(wire)
        ws.expect(rb"\x8a\x02hi")  # the PONG, before the message is whole
        ws.expect(rb"id=['\"]frag['\"]")
    finally:
        ws.close()


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_half_close_ends_the_stream_and_the_session(server: RunningServer, tls: bool) -> None:
    """The client shuts its sending side mid-stream (TLS: close_notify or a bare
    FIN): the session ends, the socket is closed, and the resource is free for a
    new login at once."""
    log = LogWindow(server)
    ws = ws_over(connect(server, tls=tls))
    resource = f"half-{tls}-{time.monotonic_ns()}"
    ws.login("mallory", "mallory-password", resource)
    if tls:
        sock = ws.sock
        assert isinstance(sock, ssl.SSLSocket)
        # a bare FIN, no close_notify (SSLSocket.shutdown drops the TLS layer)
        sock.shutdown(socket.SHUT_WR)
    else:
        ws.sock.shutdown(socket.SHUT_WR)
    _, closed = read_until_closed(ws.sock, 3)
    assert closed
    ws.close()
    # The same full JID logs in again without a conflict with a ghost.
    again = ws_over(connect(server, tls=tls))
    try:
        again.login("mallory", "mallory-password", resource)
        again.send(b"<iq type='get' id='x1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        again.expect(rb"id=['\"]x1['\"]")
        assert b"conflict" not in again.buffer
    finally:
        again.close()
    assert not tracebacks(log.text())


def test_a_client_that_never_answers_our_close_is_aborted(server: RunningServer) -> None:
    """The client sends <close/>, gets ours and our close frame, and never sends its
    close frame nor closes: the server aborts the socket CLOSE_TIMEOUT (10 s) later."""
    ws = ws_session(server)
    try:
        port = ws.sock.getsockname()[1]
        ws.send(CLOSE_FRAMING)
        ws.expect(rb"\x88\x02\x03\xe8")
        assert _established(server.http_port, port)
        assert wait_until_gone(server.http_port, port, 11.5)
    finally:
        ws.close()


def test_a_wss_client_that_never_reads_is_cut_off(server: RunningServer) -> None:
    """Over TLS the output cap reads the socket's buffer under the TLS layer: a
    client that never reads is closed once it holds max_output_buffer (256 KiB)."""
    log = LogWindow(server)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", server.https_port))
    context = ssl.create_default_context(cafile=str(server.certificate))
    victim = ws_over(context.wrap_socket(raw, server_hostname="localhost"))
    victim.login("victim", "victim-password", "tls-slow")
    sender = RawWs(server.http_port)
    try:
        sender.login("alice", "alice-password", "tls-sender")
        before = rss_kib(server.process.pid)
        body = b"x" * 100_000
        # 10 MB: a loopback socket's kernel buffers alone take a few MB
        for _ in range(100):
            sender.send(
                b"<message to='victim@localhost/tls-slow' type='chat'><body>"
                + body
                + b"</body></message>"
            )
        deadline = time.monotonic() + 5
        while "closing victim@localhost/tls-slow" not in log.text():
            assert time.monotonic() < deadline, log.text()[-2000:]
            time.sleep(0.05)
        assert rss_kib(server.process.pid) - before < RSS_BOUND_KIB
    finally:
        victim.close()
        sender.close()


# ---------------------------------------------------------------- connections


def test_every_path_gives_back_its_per_address_count(tmp_path: Path) -> None:
    """With max_connections_per_address = 6, connections that end every way (idle,
    mid-head, mid-body, handed to aiohttp, upgraded, refused with 413, killed by
    a protocol error) each give back their count: six new ones are accepted after."""
    srv = start_web_server(
        tmp_path,
        "max_request_size = 4096\nmax_connections_per_address = 6\n[http.chat]\nenabled = false\n",
        auth="allow_plain_without_tls = true\n",
        limits="max_preauth_connections_per_address = 100\n",
        https=True,
        plain_c2s=True,
    )
    try:
        for tls in (False, True):
            socks = [connect(srv, tls=tls) for _ in range(6)]
            socks[1].sendall(b"POST /http-bind HTTP/1.1\r\nHost: x\r\n")
            socks[2].sendall(
                b"POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n<b"
            )
            socks[3].sendall(HOST_META)
            socks[4].sendall(handshake())
            socks[5].sendall(b"POST /http-bind HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
            time.sleep(0.3)
            # the seventh is refused (closed at once)
            with contextlib.suppress(OSError), connect(srv, timeout=2) as extra:
                extra.sendall(HOST_META)
                data, closed = read_until_closed(extra, 2)
                assert closed and not data, data
            socks[4].sendall(frame(b"x", 3))  # a protocol error: 1002
            time.sleep(0.2)
            for sock in socks:
                sock.close()
            time.sleep(0.5)
        again = [connect(srv) for _ in range(3)] + [connect(srv, tls=True) for _ in range(3)]
        try:
            for sock in again:
                sock.sendall(HOST_META.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            for sock in again:
                data, _ = read_until_closed(sock, 3)
                assert data.startswith(b"HTTP/1.1 200 "), data[:100]
        finally:
            for sock in again:
                sock.close()
        assert not tracebacks(srv.log_text())
    finally:
        assert srv.stop() == 0


# ---------------------------------------------------------------- timeouts (in-process)


@pytest.fixture
async def short_timeouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A server in this process whose keep-alive (15 s) and BOSH body (20 s)
    timeouts are 1 s and 1.5 s, and whose WebSocket pings come every second."""
    from chatgate.http import bosh, listener
    from tests.unit.http.bosh_client import start_web

    monkeypatch.setattr(listener, "KEEPALIVE_TIMEOUT", 1.0)
    monkeypatch.setattr(bosh, "BODY_TIMEOUT", 1.5)
    server = await start_web(
        tmp_path,
        {"bosh": {"max_wait": 2}, "websocket": {"enabled": True, "ping_interval": 1.0}},
    )
    assert server.http is not None
    yield server.http.bound[0][2]
    await server.stop()


async def _slow(port: int, pieces: list[bytes], gap: float, seconds: float) -> tuple[bytes, float]:
    """Send `pieces` one every `gap` seconds; what came back until the server
    closed (or `seconds` passed), and when it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = asyncio.get_running_loop().time()

    async def trickle() -> None:
        for piece in pieces:
            writer.write(piece)
            await asyncio.sleep(gap)

    task = asyncio.create_task(trickle())
    data = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(65536):
                data += chunk
    except (TimeoutError, ConnectionError):
        pass
    task.cancel()
    writer.close()
    return data, asyncio.get_running_loop().time() - started


async def test_slowloris_head_is_cut_at_the_keepalive_timeout(short_timeouts: int) -> None:
    head = post(unknown_sid())
    data, took = await _slow(short_timeouts, [head[i : i + 1] for i in range(len(head))], 0.1, 5)
    assert data == b"" and 0.8 < took < 2.0, (data, took)


async def test_slowloris_body_gets_408(short_timeouts: int) -> None:
    body = unknown_sid()
    raw = post(body)
    head_end = raw.index(b"\r\n\r\n") + 4
    pieces = [raw[:head_end]] + [raw[i : i + 1] for i in range(head_end, len(raw) - 1)]
    data, took = await _slow(short_timeouts, pieces, 0.1, 6)
    answers = responses(data)
    assert [a[0] for a in answers] == [408], data
    assert b"bad-request" in answers[0][2]
    assert 1.3 < took < 4.5, took


async def test_an_idle_connection_after_a_request_is_closed(short_timeouts: int) -> None:
    data, took = await _slow(short_timeouts, [PREFLIGHT], 0.0, 5)
    assert [a[0] for a in responses(data)] == [204] and 0.8 < took < 2.0, (data, took)


async def test_a_websocket_that_does_not_answer_pings_is_dropped(short_timeouts: int) -> None:
    data, took = await _slow(short_timeouts, [handshake(extra=frame(OPEN))], 0.0, 5)
    assert b"<stream:features" in data
    assert b"\x89\x00" in data  # the server's PING
    assert 1.2 < took < 3.0, took


async def test_a_websocket_that_answers_pings_stays(short_timeouts: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", short_timeouts)
    writer.write(handshake(extra=frame(OPEN)))
    seen = b""
    try:
        async with asyncio.timeout(3.5):
            while True:
                chunk = await reader.read(65536)
                assert chunk, "closed although it answered every PING"
                seen += chunk
                while b"\x89\x00" in seen:
                    seen = seen.replace(b"\x89\x00", b"", 1)
                    writer.write(frame(b"", 0xA))
    except TimeoutError:
        pass
    finally:
        writer.close()


# ---------------------------------------------------------------- flow control (one lane)


class _Socket(asyncio.Transport):
    """What a lane needs of a transport, recording writes and reading state."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = True
        self.closing = False
        self.written = b""

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 5) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0


class _WebSocket:
    """Stands for the LaneWebSocket the lane makes: records what it is given."""

    def __init__(self) -> None:
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data

    def connection_lost(self, exc: BaseException | None) -> None:
        pass


class _Bosh:
    """Stands for the BOSH endpoint: each request is answered when the test says."""

    def __init__(self) -> None:
        self.waiting: list[asyncio.Future[tuple[tuple[int, bytes], str]]] = []

    async def answer(self, body: bytes, facts: object) -> tuple[tuple[int, bytes], str]:
        self.waiting.append(asyncio.get_running_loop().create_future())
        return await self.waiting[-1]

    async def answer_one(self) -> None:
        for _ in range(3):
            await asyncio.sleep(0)  # the lane's task reaches `answer`
        self.waiting.pop(0).set_result(((404, b"<body/>"), "text/xml"))
        for _ in range(3):
            await asyncio.sleep(0)


def _lane(
    max_request: int = 4096, bosh: _Bosh | None = None
) -> tuple[Any, _Socket, list[_WebSocket]]:
    from chatgate.http.lane import LaneProtocol, LaneRoutes

    made: list[_WebSocket] = []

    def websocket(transport: asyncio.Transport, forwarded: str | None) -> _WebSocket:
        made.append(_WebSocket())
        return made[-1]

    routes = LaneRoutes(
        bosh=bosh,  # type: ignore[arg-type]
        bosh_paths=frozenset(("/http-bind",)),
        allowed_origin=lambda origin: None,
        facts=lambda transport, forwarded: None,  # type: ignore[arg-type,return-value]
        websocket_path="/xmpp-websocket",
        websocket=websocket,  # type: ignore[arg-type]
        aiohttp_protocol=asyncio.Protocol,
        max_request_size=max_request,
        keepalive_timeout=15.0,
        body_timeout=20.0,
    )
    lane = LaneProtocol(routes, None)
    sock = _Socket()
    lane.connection_made(sock)
    return lane, sock, made


async def test_a_handshake_answered_after_backpressure_reads_on() -> None:
    """The peer did not read (writes paused) and sent past the lane's backlog
    (reading paused); once it reads, the next request is a WebSocket handshake:
    the WebSocket must get the socket back to reading, or its stream stalls."""
    lane, sock, made = _lane()
    lane.pause_writing()
    pending = b"\x81\xfe" + b"x" * (8192 + 4096)  # the start of a frame
    lane.data_received(handshake() + pending)
    assert not sock.reading  # the backlog is full
    lane.resume_writing()
    assert b"101 Switching Protocols" in sock.written and made
    assert made[0].received == pending
    assert sock.reading
    lane.connection_lost(None)


async def test_pipelined_preflights_do_not_grow_the_stack() -> None:
    lane, sock, _ = _lane(bosh=_Bosh())
    lane.data_received(PREFLIGHT * 5000)
    # a slice per loop turn, not all 5,000 in one (others wait meanwhile)
    assert 0 < sock.written.count(b"HTTP/1.1 204 ") < 1000
    for _ in range(20):
        await asyncio.sleep(0)
    assert sock.written.count(b"HTTP/1.1 204 ") == 5000
    lane.connection_lost(None)


async def test_the_backlog_stays_paused_until_answers_bring_it_back() -> None:
    """Reading resumes only once the backlog is back within one head and one body,
    not after each answer: an answer takes ~150 bytes off, a read may add 256 KiB
    (resuming after each answer let a pipelining peer grow it by hundreds of MB)."""
    bosh = _Bosh()
    lane, sock, _ = _lane(max_request=4096, bosh=bosh)
    request = post(unknown_sid())
    lane.data_received(request * 1000)
    assert not sock.reading  # one request being answered, the rest past the limit
    await bosh.answer_one()
    assert sock.written.count(b"HTTP/1.1 404 ") == 1
    assert not sock.reading  # still far past the limit
    answered = 1
    while not sock.reading:
        await bosh.answer_one()
        answered += 1
    # it reads again once what waits (behind the request now being answered) fits
    # within one head and one body
    waiting = 1000 - answered - 1
    assert waiting * len(request) <= 8192 + 4096 < (waiting + 1) * len(request)
    lane.connection_lost(None)
