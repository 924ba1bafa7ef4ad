"""What bounds a media server's hooks on the listener (http/hooks.py, http/lane.py):
a refusal of brute-force protection's is answered at once, a held answer does not
take its media server's connections, the lane's own refusals of a hook are plain
text within the hooks' body timeout, and refused callers are logged once per
address.  A whole server in this process, raw HTTP as nginx-rtmp and MediaMTX
send it."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from chatgate.auth.credentials import derive_all
from chatgate.server import Server

from .bosh_client import start_web
from .test_hooks import PREFIX, RULES, call, nginx, publish

#: failures held 3 s from the first one on, one slot per address: a second
#: attempt while the first is held is refused unevaluated (THROTTLED)
STRICT = {
    "throttle": {
        "address": {
            "free_failures": 0,
            "base_delay": 3.0,
            "max_delay": 3.0,
            "max_in_flight": 1,
            "max_in_flight_per_account": 1,
        }
    }
}
#: failures held 2 s from the first one on, many slots
HOLDING = {"throttle": {"address": {"free_failures": 0, "base_delay": 2.0, "max_delay": 2.0}}}


async def start(tmp: Path, *, http: dict[str, object], auth: dict[str, object]) -> Server:
    """As `test_hooks.serve` (alice's password is pencil-case), with `http` and `auth`."""
    server = await start_web(tmp, http, auth, {"enabled": True, "rules": RULES})
    assert server.ctx is not None
    await server.ctx.db.accounts.create(
        "alice", "localhost", derive_all("pencil-case", iterations=4096)
    )
    server.ctx.provider.invalidate("alice", "localhost")  # type: ignore[attr-defined]
    return server


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[Server]:
    server = await start(tmp_path, http={}, auth=STRICT)
    yield server
    await server.stop()


def wrong_password(user: str, address: bytes = b"203.0.113.5") -> bytes:
    body = publish("alice", b"&username=" + user.encode() + b"&password=wrong")
    return nginx("publish", body.replace(b"addr=203.0.113.5", b"addr=" + address))


def mediamtx(user: str, password: str) -> bytes:
    """MediaMTX's request, HTTP/1.1 keep-alive (it reuses its connections)."""
    body = json.dumps(
        {
            "user": user,
            "password": password,
            "token": "",
            "ip": "198.51.100.7",
            "action": "read",
            "path": "live/alice",
            "protocol": "rtsp",
            "id": None,
            "query": "",
        }
    ).encode()
    return (
        b"POST /hooks/mediamtx/auth HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def timed(coro: Awaitable[tuple[int, dict[str, str], bytes]]) -> tuple[float, int, bytes]:
    started = time.monotonic()
    status, _, body = await coro
    return time.monotonic() - started, status, body


def open_from(server: Server, address: str) -> int:
    assert server.http is not None
    return server.http.connections.open(address)


def lane_connections(server: Server) -> int:
    assert server.http is not None and server.http.lane is not None
    return len(server.http.lane.live)


# ---------------------------------------------------------------- throttled, held


async def test_a_throttled_refusal_is_answered_at_once(strict: Server) -> None:
    """The first wrong guess is held 3 s and takes the address's only slot; the
    next, refused unevaluated, is answered at once (it was held as long as the
    throttle's retry-after, up to a minute, with nothing bounding how many)."""
    first = asyncio.ensure_future(timed(call(strict, wrong_password("alice"))))
    await asyncio.sleep(0.3)
    took, status, body = await timed(call(strict, wrong_password("bob")))
    assert (status, body) == (403, b"throttled\n")
    assert took < 1.0, took
    held, status, body = await first
    assert (status, body) == (403, b"wrong-credentials\n")
    assert held > 2.5, held  # the evaluated failure is still held


async def test_a_right_password_from_another_address_is_not_held(strict: Server) -> None:
    first = asyncio.ensure_future(call(strict, wrong_password("alice")))
    await asyncio.sleep(0.3)
    body = publish("alice", b"&username=alice&password=pencil-case")
    took, status, _ = await timed(
        call(strict, nginx("publish", body.replace(b"203.0.113.5", b"203.0.113.6")))
    )
    assert status == 200 and took < 1.0, (status, took)
    await first


async def test_held_answers_do_not_count_towards_the_media_servers_connections(
    tmp_path: Path,
) -> None:
    """max_connections_per_address = 2: three held wrong guesses (nginx opens a
    connection per hook) and then a fourth request all get their answers; the
    count is back to nothing when they are answered."""
    server = await start(tmp_path, http={"max_connections_per_address": 2}, auth=HOLDING)
    try:
        held = []
        for n, user in enumerate(("u1", "u2", "u3"), 1):
            held.append(asyncio.ensure_future(timed(call(server, wrong_password(user)))))
            # each is being decided (its count lent) before the next connects
            await until(
                lambda n=n: lane_connections(server) == n and open_from(server, "127.0.0.1") == 0
            )
        body = publish("alice", b"&username=alice&password=pencil-case")
        status, _, _ = await call(server, nginx("publish", body.replace(b"=6", b"=7")))
        assert status == 200
        for took, status, _ in await asyncio.gather(*held):
            assert status == 403 and took > 1.5, (status, took)
        await until(lambda: open_from(server, "127.0.0.1") == 0)
    finally:
        await server.stop()


async def test_a_held_connection_that_finds_the_limit_full_closes_after_its_answer(
    tmp_path: Path,
) -> None:
    """A keep-alive hook (MediaMTX's) is held; meanwhile two idle connections take
    the address's two places.  The answer comes with Connection: close, and the
    count is the idle connections' only."""
    server = await start(tmp_path, http={"max_connections_per_address": 2}, auth=HOLDING)
    idle: list[asyncio.StreamWriter] = []
    try:
        assert server.http is not None
        _, host, port = server.http.bound[0]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(mediamtx("alice", "wrong"))
        await until(lambda: lane_connections(server) == 1 and open_from(server, "127.0.0.1") == 0)
        for _ in range(2):
            idle.append((await asyncio.open_connection(host, port))[1])
        await until(lambda: open_from(server, "127.0.0.1") == 2)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 403 ") and b"Connection: close" in head, head
        assert await asyncio.wait_for(reader.read(), 5) == b"wrong-credentials\n"
        writer.close()
        assert open_from(server, "127.0.0.1") == 2
    finally:
        for w in idle:
            w.close()
        await until(lambda: open_from(server, "127.0.0.1") == 0)
        await server.stop()


async def test_a_client_leaving_while_its_answer_is_held_is_counted_once(
    tmp_path: Path,
) -> None:
    """Three clients reset their connections while their wrong guesses are held:
    the connections are gone at once, and when the held answers find them gone
    the address's count is nothing (not released twice, not taken again)."""
    server = await start(tmp_path, http={"max_connections_per_address": 2}, auth=HOLDING)
    try:
        assert server.http is not None
        _, host, port = server.http.bound[0]
        for n in range(3):
            _, writer = await asyncio.open_connection(host, port)
            writer.write(wrong_password(f"left{n}"))
            await until(
                lambda: lane_connections(server) == 1 and open_from(server, "127.0.0.1") == 0
            )
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # a reset: gone before the held answer
            await until(lambda: lane_connections(server) == 0)
        await asyncio.sleep(2.5)  # the held answers find their connections gone
        assert open_from(server, "127.0.0.1") == 0
        status, _, _ = await call(server, nginx("publish", publish("alice", b"")))
        assert status == 403
        await until(lambda: open_from(server, "127.0.0.1") == 0)
    finally:
        await server.stop()


async def test_a_keep_alive_hook_connection_is_counted_again_after_its_answer(
    tmp_path: Path,
) -> None:
    server = await start(tmp_path, http={}, auth={})
    try:
        assert server.http is not None
        _, host, port = server.http.bound[0]
        reader, writer = await asyncio.open_connection(host, port)
        for _ in range(3):
            writer.write(mediamtx("", ""))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 401 ") and b"Connection: close" not in head
            await reader.readexactly(len(b"no rule admits this caller\n"))
            await until(lambda: open_from(server, "127.0.0.1") == 1)
        writer.close()
        await until(lambda: open_from(server, "127.0.0.1") == 0)
    finally:
        await server.stop()


async def test_a_refused_renewal_is_answered_at_once(tmp_path: Path) -> None:
    """nginx-rtmp's on_update carries the client's URL of a start that was
    allowed: its refusal is a revocation or an expiry, answered at once so that
    nginx ends the stream now (it was held like a guess, 16 s after a few
    refusals from the same address: longer than nginx's update period)."""
    server = await start(tmp_path, http={}, auth=HOLDING)
    try:
        renewal = PREFIX + b"&call=update_publish&name=alice&username=alice&password=revoked"
        took, status, body = await timed(call(server, nginx("update", renewal)))
        assert (status, body) == (403, b"wrong-credentials\n") and took < 1.0, (status, took)
        held, status, _ = await timed(call(server, wrong_password("alice")))
        assert status == 403 and held > 1.5, held  # a start's failure still is held
    finally:
        await server.stop()


# ---------------------------------------------------------------- the lane's refusals


async def test_a_hook_body_over_the_limit_is_refused_in_plain_text(tmp_path: Path) -> None:
    server = await start(tmp_path, http={"max_request_size": 4096}, auth={})
    try:
        body = PREFIX + b"&call=publish&name=alice&x=" + b"y" * 5000
        status, headers, answer = await call(server, nginx("publish", body))
        assert status == 413
        assert headers["content-type"].startswith("text/plain")
        assert answer == b"the request body is larger than max_request_size\n"
    finally:
        await server.stop()


async def test_a_slow_hook_body_gets_408_in_plain_text_after_the_hooks_timeout(
    tmp_path: Path,
) -> None:
    server = await start(tmp_path, http={}, auth={})
    try:
        assert server.http is not None and server.http.hooks is not None
        server.http.hooks.body_timeout = 0.5  # BODY_TIMEOUT (10 s), shortened
        raw = nginx("publish", publish("alice", b""))
        took, status, answer = await timed(call(server, raw[:-10]))
        assert status == 408 and answer == b"the request body took too long\n"
        assert 0.4 < took < 5, took  # BOSH's 20 s no longer applies
    finally:
        await server.stop()


# ---------------------------------------------------------------- the log


async def test_refused_callers_are_logged_once_per_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_web(
        tmp_path, {}, {}, {"enabled": True, "rules": RULES, "hook_networks": ["192.0.2.0/24"]}
    )
    try:
        with caplog.at_level(logging.INFO, logger="chatgate.http.hooks"):
            for _ in range(20):
                status, _, _ = await call(server, wrong_password("alice"))
                assert status == 403
        lines = [r for r in caplog.records if "hook_networks" in r.getMessage()]
        assert len(lines) == 1 and "127.0.0.1" in lines[0].getMessage()
    finally:
        await server.stop()


async def test_a_long_unknown_endpoint_is_logged_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start(tmp_path, http={}, auth={})
    try:
        path = b"x" * 4000
        raw = (
            b"POST /hooks/nginx-rtmp/" + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        with caplog.at_level(logging.INFO, logger="chatgate.http.hooks"):
            status, _, _ = await call(server, raw)
        assert status == 404
        logged = [
            r.getMessage() for r in caplog.records if "no such nginx-rtmp hook" in r.getMessage()
        ]
        assert len(logged) == 1 and len(logged[0]) < 200, logged
    finally:
        await server.stop()


# ---------------------------------------------------------------- aiohttp's reading


@pytest.mark.parametrize(
    ("target", "status", "answer"),
    [
        (b"http://127.0.0.1/hooks/nginx-rtmp/publish", 200, b""),
        (b"http://127.0.0.1/hooks/nginx-rtmp/%70ublish", 404, b"no such nginx-rtmp hook\n"),
        (b"/hooks/nginx-rtmp/%70ublish", 404, b"no such nginx-rtmp hook\n"),
    ],
)
async def test_aiohttp_reads_the_target_as_the_lane_does(
    tmp_path: Path, target: bytes, status: int, answer: bytes
) -> None:
    """A chunked body makes the request aiohttp's: an absolute-form target (RFC
    9112 §3.2.2) reaches its adapter (it was read as the adapter "http:"), and a
    percent escape is not decoded into another endpoint."""
    server = await start(tmp_path, http={}, auth={})
    try:
        body = publish("alice", b"&username=alice&password=pencil-case")
        raw = (
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (target, len(body), body)
        )
        got, headers, text = await call(server, raw)
        assert (got, text) == (status, answer)
        assert "server" in headers  # aiohttp's answer, not the lane's
    finally:
        await server.stop()
