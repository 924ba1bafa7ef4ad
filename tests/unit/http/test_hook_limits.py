"""What bounds a media server's hooks on the listener (http/hooks.py): a refusal
of brute-force protection's is answered at once, and refused callers are logged
once per address.  A whole server in this process, raw HTTP as nginx-rtmp
sends it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from chatgate.auth.credentials import derive_all
from chatgate.server import Server

from .bosh_client import start_web
from .test_hooks import RULES, call, nginx, publish

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


async def timed(coro: Awaitable[tuple[int, dict[str, str], bytes]]) -> tuple[float, int, bytes]:
    started = time.monotonic()
    status, _, body = await coro
    return time.monotonic() - started, status, body


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
