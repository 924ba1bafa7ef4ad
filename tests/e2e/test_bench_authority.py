"""The benchmark's authority scenario (issue 12): its load generator and a real tiny run.

The generator must send what nginx-rtmp sends (chatgate's own nginx-rtmp adapter reads its
bodies), must count every answer that is not the expected one (a bench whose answers are wrong
measures nothing), and must not hang on a hook that never answers. The tiny run starts
`chatgate serve` with `[streams]`, makes tokens and stream keys with `chatgate streams`, and
checks that every figure came out with no wrong answer; it asserts no timing.

The small HTTP servers below stand in for a misbehaving hook endpoint, to test the
generator's error accounting; chatgate itself is only ever measured for real.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bench import plan as bench_plan
from bench.loadgen import hooks
from bench.loadgen.hooks import HookLoad, NginxRtmpForm, Tally

from chatgate.streams.adapters.base import CredentialKind, HookAction, HookRequest, Question
from chatgate.streams.adapters.nginx_rtmp import NginxRtmpAdapter

pytestmark = [pytest.mark.e2e, pytest.mark.bench]

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ the requests


def test_requests_are_nginx_rtmps_own_bytes() -> None:
    head = hooks.request_head("play", 5280, "nginx")
    body = NginxRtmpForm("bench").play(b"198.51.100.7", 12, b"live3", b"token=1AB")
    request = hooks.framed(head, body)
    assert request.startswith(
        b"POST /hooks/nginx-rtmp/play HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nConnection: Close\r\n"
        b"Content-Length: %d\r\n\r\napp=bench&flashver=" % len(body)
    )
    assert body.endswith(
        b"&addr=198.51.100.7&clientid=12&call=play&name=live3"
        b"&start=4294965296&duration=0&reset=0&token=1AB"
    )
    keepalive = hooks.request_head("play_done", 5280, "keepalive")
    assert keepalive.startswith(b"POST /hooks/nginx-rtmp/play_done HTTP/1.1\r\n")
    assert b"Connection" not in keepalive


@pytest.mark.parametrize(
    ("args", "kind", "secret"),
    [
        (b"token=1AB", CredentialKind.TOKEN, "1AB"),
        (b"key=k3y", CredentialKind.STREAM_KEY, "k3y"),
        (b"username=u7&password=pw7", CredentialKind.PASSWORD, "pw7"),
    ],
)
def test_chatgates_adapter_reads_the_generators_bodies(
    args: bytes, kind: CredentialKind, secret: str
) -> None:
    adapter = NginxRtmpAdapter()
    form = NginxRtmpForm("bench")
    for endpoint, body, action in (
        ("play", form.play(b"198.51.100.7", 42, b"live3", args), HookAction.PLAY),
        ("play_done", form.play_done(b"198.51.100.7", 42, b"live3", args), HookAction.PLAY_DONE),
    ):
        q = adapter.parse(HookRequest("POST", endpoint, body=body, peer="127.0.0.1"))
        assert isinstance(q, Question), q
        assert (q.action, q.stream, q.client_id) == (action, "bench/live3", "42")
        assert q.client_address == "198.51.100.7"
        assert (q.credentials.kind, q.credentials.secret) == (kind, secret)


# ------------------------------------------------------------------ error accounting


async def _hook_server(answer: Any) -> tuple[asyncio.Server, int]:
    """Reads one request per connection and lets `answer(n)` reply (bytes) or hang (None)."""
    count = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                count += 1
                reply = answer(count)
                if reply is None:
                    await reader.read()  # never answers
                    return
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _bodies(n: int) -> hooks.Source:
    it = iter(range(n))
    form = NginxRtmpForm("bench")
    return lambda: next((form.play(b"192.0.2.1", i, b"live0", b"token=x") for i in it), None)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
DENIED = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\nConnection: close\r\n\r\ndenied\n"


def test_every_wrong_answer_is_counted_and_fails_the_figure() -> None:
    async def main() -> tuple[dict[str, Any], HookLoad]:
        server, port = await _hook_server(
            lambda n: DENIED if n % 10 == 0 else b"garbage\r\n\r\n" if n % 25 == 1 else OK
        )
        try:
            # the stand-in server runs in this process: its CPU is ours
            load = HookLoad(asyncio.get_running_loop(), port, os.getpid(), connections=4)
            result = await load.measure(_bodies(200), "play", 200, 0.0, 5.0)
        finally:
            server.close()
        return result, load

    result, load = asyncio.run(main())
    assert result["requests"] == 200
    # 20 denials (every tenth) and 8 malformed answers (1, 26, 51, ...)
    assert result["errors"] == 28, result
    assert result["decisions"] == 200 - 28
    assert any("status 403" in s and "denied" in s for s in result["error_samples"])
    assert any("malformed answer" in s for s in result["error_samples"])
    assert load.opened == 200  # nginx's wire: one connection per request
    figure = {**result, "cleanup": {"requests": 0, "errors": 0}}
    with pytest.raises(RuntimeError, match="wrong or missing answers"):
        bench_plan._authority_figures(bench_plan.PLANS["tiny"], {"figures": {"token": figure}})


@pytest.mark.timeout(60)
def test_a_hook_that_never_answers_is_an_error_not_a_hang(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hooks, "REQUEST_TIMEOUT", 0.5)

    async def main() -> Tally:
        server, port = await _hook_server(lambda n: None if n == 3 else OK)
        try:
            load = HookLoad(asyncio.get_running_loop(), port, 0, connections=2)
            tally = Tally(200)
            await load.run(_bodies(6), "play", tally)
        finally:
            server.close()
        return tally

    t0 = time.monotonic()
    tally = asyncio.run(main())
    assert time.monotonic() - t0 < 5.0
    assert (tally.requests, tally.errors) == (6, 1)
    assert "no answer in" in tally.samples[0]


def test_keepalive_wire_reuses_its_connections() -> None:
    kept = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    async def main() -> tuple[Tally, HookLoad]:
        server, port = await _hook_server(lambda n: kept)
        try:
            load = HookLoad(asyncio.get_running_loop(), port, 0, wire="keepalive", connections=3)
            tally = Tally(200)
            tally.recording = True
            await load.run(_bodies(90), "play", tally)
        finally:
            server.close()
        return tally, load

    tally, load = asyncio.run(main())
    assert (tally.requests, tally.errors, tally.answered) == (90, 0, 90)
    assert load.opened == 3


# ------------------------------------------------------------------ a real tiny run


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_authority_run_against_chatgate(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "bench.run", "--tiny", "--servers", "chatgate"),
            *("--scenarios", "authority", "--no-docs", "--out", str(tmp_path)),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"bench.run failed:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    [results] = list(tmp_path.glob("*-tiny/results.json"))
    data = json.loads(results.read_text())
    [record] = data["runs"]
    assert record["scenario"] == "authority" and "error" not in record, record.get("error")
    result = record["result"]
    assert result["errors"] == 0, result.get("error_samples")
    figures = result["figures"]
    for name in ("token", "password_cold", "password_warm"):
        assert figures[name]["decisions"] > 0, (name, figures[name])
        assert figures[name]["cleanup"]["errors"] == 0
        assert record["figures"][f"authority_{name}_per_s"]["value"] > 0
        assert record["figures"][f"authority_{name}_p99_ms"]["value"] > 0
    key = figures["stream_key"]
    assert key.get("decisions", 0) > 0 or key["unavailable"], key
    # each cold check was an account's first: no account twice
    first, end = figures["password_cold"]["accounts"]
    assert figures["password_cold"]["requests"] <= end - first
    # keep-alive by default (connections reused), then the per-connection figures on
    # nginx's wire (a connection per request): fewer connections than requests, but more
    # than the keep-alive pool alone
    assert result["wire"] == "keepalive"
    assert result["connections"] < result["http_connections"] < result["http_requests"]
    assert figures["token_per_connection"]["decisions"] > 0
    config = data["meta"]["peers"]["chatgate"]["config"]
    assert "[streams]" in config and "enabled = true" in config.split("[streams]")[1]
    assert "token decisions/s ≥ 10,000" in proc.stdout
    assert "Stream authority (issue 12, chatgate only)" in proc.stdout
