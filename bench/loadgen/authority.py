"""The `authority` task: chatgate as the stream authority, asked by nginx-rtmp (issue 12).

Four figures, each a warm-up and a window of ``on_play`` decisions by C connections in a
closed loop (`hooks.HookLoad`), every answer checked to be nginx-rtmp's allow (200), on the
chosen wire (HTTP/1.1 keep-alive by default, as MediaMTX's and SRS's HTTP clients call; with
it, the token and key figures again on nginx-rtmp's own wire, one HTTP/1.0 connection per
request, ``*_per_connection``):

- ``token``: ``?token=...``, a signed play token for the stream (no database read);
- ``stream_key``: ``?key=...``, an account's stream key (looked up, then the account's rights);
- ``password_cold``: ``?username=uN&password=pwN``, each account's first check since the
  server started (the key derivation, PBKDF2, every time). XMPP logins with SCRAM check no
  password, so scenarios sharing the start (quick runs) leave it cold; with ``--mechanism
  PLAIN`` they do check passwords, and a cache of verified passwords would warm it;
- ``password_warm``: the same few accounts again and again, each checked once before the
  warm-up (what a credential cache saves).

Viewer bounds of the live registry (`LiveLimits`: 100,000 viewers, 10,000 per stream): every
request is a new viewer (its own ``clientid``, as nginx numbers its connections), spread over
the streams ``bench/live0..N``; a figure stops at `max_requests` (below 100,000), and after its
window every viewing it started is ended with ``on_play_done`` (unmeasured, answers checked),
so the next figure starts from an empty registry. No decision is a repeat of an earlier one.

Credentials come from the orchestrator (`bench.authority`: tokens and keys made with chatgate's
CLI or its token key). A stream key the server refuses, while the server keeps its keys in
memory only, makes the key figure "not available", with the server's answer as the reason.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from bench.loadgen.hooks import HookLoad, NginxRtmpForm, Source, Tally

#: nginx-rtmp's answer to an allowed play and to every done
ALLOWED = 200
#: accounts checked again and again for the warm password figure
WARM_ACCOUNTS = 64
FIGURES = (
    "token",
    "stream_key",
    "password_cold",
    "password_warm",
    "token_per_connection",
    "stream_key_per_connection",
)

#: the client query string of request `i` on stream index `s`, or None when there is no more
Args = Callable[[int, int], bytes | None]


def _address(client_id: int) -> bytes:
    """The RTMP client's address nginx reports: the documentation range, 250 of them."""
    return b"198.51.100.%d" % (client_id % 250 + 1)


class AuthorityRun:
    def __init__(
        self,
        load: HookLoad,
        credentials: dict[str, Any],
        *,
        warmup: float,
        duration: float,
        max_requests: int,
    ) -> None:
        self.load = load
        self.credentials = credentials
        self.form = NginxRtmpForm(credentials["app"])
        self.names = [n.encode() for n in credentials["names"]]
        self.warmup = warmup
        self.duration = duration
        self.max_requests = max_requests
        self._ids = itertools.count(1)
        #: (clientid, stream index, args) of every play sent since the last cleanup
        self._started: list[tuple[int, int, bytes]] = []

    def source(self, args: Args, limit: int) -> Source:
        """Bodies of `limit` plays at most, each with a new clientid."""
        issued = 0
        names = self.names
        started = self._started
        form = self.form

        def next_body() -> bytes | None:
            nonlocal issued
            if issued >= limit:
                return None
            client_id = next(self._ids)
            s = client_id % len(names)
            a = args(issued, s)
            if a is None:
                return None
            issued += 1
            started.append((client_id, s, a))
            return form.play(_address(client_id), client_id, names[s], a)

        return next_body

    async def cleanup(self) -> dict[str, Any]:
        """``on_play_done`` for every play since the last cleanup (as nginx sends it, with the
        client's arguments again)."""
        todo = iter(self._started)
        names, form = self.names, self.form

        def next_body() -> bytes | None:
            for client_id, s, a in todo:
                return form.play_done(_address(client_id), client_id, names[s], a)
            return None

        tally = Tally(ALLOWED)
        await self.load.run(next_body, "play_done", tally)
        self._started = []
        out: dict[str, Any] = {"requests": tally.requests, "errors": tally.errors}
        if tally.samples:
            out["error_samples"] = tally.samples
        return out

    async def figure(self, args: Args, limit: int | None = None) -> dict[str, Any]:
        result = await self.load.measure(
            self.source(args, min(limit or self.max_requests, self.max_requests)),
            "play",
            ALLOWED,
            self.warmup,
            self.duration,
        )
        result["cleanup"] = await self.cleanup()
        return result

    # ------------------------------------------------------------ the four figures

    async def token(self) -> dict[str, Any]:
        tokens = self.credentials.get("tokens") or {}
        if not tokens:
            return {"unavailable": self.credentials.get("tokens_unavailable") or "no tokens"}
        by_index = [b"token=" + tokens[n].encode() for n in self.credentials["names"]]
        return await self.figure(lambda _i, s: by_index[s])

    async def stream_key(self) -> dict[str, Any]:
        keys = self.credentials.get("keys") or []
        if not keys:
            return {"unavailable": self.credentials.get("keys_unavailable") or "no stream keys"}
        args = [b"key=" + k.encode() for k in keys]
        # the server may keep its keys in memory only, and not know these: ask once
        client_id = next(self._ids)
        status, text = await self.load.one(
            "play", self.form.play(_address(client_id), client_id, self.names[0], args[0])
        )
        self._started.append((client_id, 0, args[0]))
        if status != ALLOWED:
            done = await self.cleanup()
            why = (
                f"the server answered {status} ({text!r}) to a stream key issued with "
                f"`{self.credentials.get('keys_issued_by', '?')}`: it does not read the key store"
            )
            return {"unavailable": why, "cleanup": done}
        return await self.figure(lambda i, _s: args[i % len(args)])

    async def password_cold(self, first: int, end: int) -> dict[str, Any]:
        def args(i: int, _s: int) -> bytes | None:
            n = first + i
            return None if n >= end else b"username=u%d&password=pw%d" % (n, n)

        result = await self.figure(args, end - first)
        result["accounts"] = [first, end]
        return result

    async def password_warm(self, count: int) -> dict[str, Any]:
        """`count` accounts checked once (unmeasured), then again and again."""
        primed = Tally(ALLOWED)
        await self.load.run(
            self.source(lambda i, _s: b"username=u%d&password=pw%d" % (i, i), count),
            "play",
            primed,
        )

        def args(i: int, _s: int) -> bytes:
            n = i % count
            return b"username=u%d&password=pw%d" % (n, n)

        result = await self.figure(args)
        result["accounts"] = [0, count]
        result["primed"] = {"requests": primed.requests, "errors": primed.errors}
        if primed.samples:
            result["primed"]["error_samples"] = primed.samples
        result["errors"] += primed.errors
        return result


def _errors(figure: dict[str, Any]) -> int:
    return int(figure.get("errors", 0)) + int(figure.get("cleanup", {}).get("errors", 0))


async def run(
    loop: asyncio.AbstractEventLoop,
    spec: dict[str, Any],
    *,
    connections: int,
    warmup: float,
    duration: float,
    max_requests: int,
    wire: str = "nginx",
) -> dict[str, Any]:
    """The four figures against the server of `spec` (its HTTP port, PID, account count)."""
    credentials = spec.get("stream_credentials")
    if not credentials:
        raise ValueError("the authority scenario needs stream credentials from the orchestrator")
    if "error" in credentials:  # making them failed: this scenario fails with the reason
        raise RuntimeError(credentials["error"])
    if not spec.get("http_port"):
        raise ValueError("the server has no HTTP port for the hooks")
    load = HookLoad(loop, spec["http_port"], spec["server_pid"], wire=wire, connections=connections)
    # an empty notification is malformed: 400 says the nginx-rtmp hook is there and answers
    status, text = await load.one("play", b"")
    if status != 400:
        raise RuntimeError(f"the nginx-rtmp hook did not answer as expected: {status} {text!r}")
    runner = AuthorityRun(
        load, credentials, warmup=warmup, duration=duration, max_requests=max_requests
    )
    pool = max(WARM_ACCOUNTS + 1, spec["users"] - spec.get("fanout_block", 0))
    figures: dict[str, dict[str, Any]] = {
        "token": await runner.token(),
        "stream_key": await runner.stream_key(),
        "password_cold": await runner.password_cold(WARM_ACCOUNTS, pool),
        "password_warm": await runner.password_warm(WARM_ACCOUNTS),
    }
    if wire != "nginx":
        # and as nginx-rtmp itself calls: one connection per request (clientids go on
        # from where the first runner stopped, so none repeats)
        nginx = HookLoad(
            loop, spec["http_port"], spec["server_pid"], wire="nginx", connections=connections
        )
        per_request = AuthorityRun(
            nginx, credentials, warmup=warmup, duration=duration, max_requests=max_requests
        )
        per_request._ids = runner._ids
        figures["token_per_connection"] = await per_request.token()
        figures["stream_key_per_connection"] = await per_request.stream_key()
        load.sent += nginx.sent
        load.opened += nginx.opened
    samples = [s for f in figures.values() for s in f.get("error_samples", [])]
    samples += [s for f in figures.values() for s in f.get("cleanup", {}).get("error_samples", [])]
    out: dict[str, Any] = {
        "figures": figures,
        "errors": sum(_errors(f) for f in figures.values()),
        "wire": wire,
        "connections": connections,
        "http_requests": load.sent,
        "http_connections": load.opened,
    }
    if samples:
        out["error_samples"] = samples[:10]
    return out
