"""The cluster scenario's generator side (issue 14): logins and messages against
`chatgate serve --workers N`, with pairs placed on the same worker or across workers.

The kernel spreads connections over the workers (SO_REUSEPORT), so a session's
worker is not chosen: it is looked up after login in the cluster's session
directory in Redis (``<prefix>res:<bare>``, resource -> "node|sid", the layout
`chatgate.cluster.directory` documents).  Pairs are then formed:

- ``same``: sender and receiver on one worker, the pairs spread evenly over the
  workers (each worker delivers its own messages: no Redis on the path);
- ``cross``: sender on one worker, receiver on another, half in each direction
  (every message is forwarded once over Redis);
- ``any``: as they come (the ordinary throughput scenario).

The measurement window sums the CPU of every server process (the parent and its
workers) and reports Redis's apart, so each figure says what bounded it on a
machine where the workers and the generator share the cores.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis

from bench import procs
from bench.loadgen.measure import Window
from bench.loadgen.scenarios import AnyClient, Runner
from bench.loadgen.xmpp import Connection, XmppError

SATURATED = 90.0
#: sessions logged in per session needed, to have enough on each worker to choose from
OVERSAMPLE = 3


class ProcessesWindow(Window):
    """A window over several server processes: `server_cpu_pct` is their sum (100 =
    one core), with each process's share, Redis's and a `bound` saying what limited
    the figure on `cores` cores."""

    def __init__(self, server_pid: int, pids: dict[str, int], cores: int) -> None:
        super().__init__(server_pid)
        self.pids = pids
        self.cores = cores
        self._cpu0: dict[str, float] = {}

    def _cpu(self) -> dict[str, float]:
        out = {}
        for label, pid in self.pids.items():
            try:
                out[label] = procs.cpu_seconds(pid)
            except OSError:
                out[label] = 0.0
        return out

    def start(self) -> None:
        super().start()
        self._cpu0 = self._cpu()

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        base = super().stop()
        now = self._cpu()
        share = {k: round(100 * (now[k] - self._cpu0.get(k, 0.0)) / wall, 1) for k in now}
        redis_pct = share.pop("redis", 0.0)
        server_pct = round(sum(share.values()), 1)
        other = base["other_cpu_pct"] + base["server_cpu_pct"] - server_pct - redis_pct
        base.update(
            server_cpu_pct=server_pct,
            process_cpu_pct=share,
            redis_cpu_pct=redis_pct,
            other_cpu_pct=round(max(0.0, other), 1),
            server_rss_kib=sum(_rss(pid) for label, pid in self.pids.items() if label != "redis"),
        )
        base["bound"] = _bound(base, share, self.cores)
        return base


def _rss(pid: int) -> int:
    try:
        return procs.rss_kib(pid)
    except OSError:
        return 0


def _bound(window: dict[str, Any], share: dict[str, float], cores: int) -> str:
    """What limited a figure: one server process's core, the generator's, or the
    machine as a whole (the workers, the generator, Redis and the kernel's loopback
    work sharing every core), else nothing (latency-bound)."""
    machine = os.cpu_count() or 1
    busy = (
        window["server_cpu_pct"]
        + window["generator_cpu_pct"]
        + window["redis_cpu_pct"]
        + window["other_cpu_pct"]
    )
    if cores == 1 and any(pct >= SATURATED for pct in share.values()):
        return "server CPU"
    if busy >= SATURATED * machine:
        return (
            f"machine CPU ({machine} cores: server {window['server_cpu_pct']:.0f} %, generator"
            f" {window['generator_cpu_pct']:.0f} %, redis {window['redis_cpu_pct']:.0f} %,"
            f" other {window['other_cpu_pct']:.0f} %)"
        )
    if any(pct >= SATURATED for pct in share.values()):
        return "server CPU (one worker)"
    if window["generator_cpu_pct"] >= SATURATED:
        return "generator CPU"
    return "neither saturated"


class ClusterRunner(Runner):
    """`Runner` whose sessions are placed by worker (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: AnyClient,
        server_pid: int,
        users: int,
        fanout_block: int,
        *,
        pids: dict[str, int],
        cores: int,
        redis_url: str = "",
        key_prefix: str = "chatgate:",
        placement: str = "any",
    ) -> None:
        super().__init__(loop, client, server_pid, users, fanout_block)
        if placement not in ("any", "same", "cross"):
            raise ValueError(f"unknown placement {placement!r}")
        self.pids = pids
        self.cores = cores
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.placement = placement
        self.placed: dict[str, Any] = {}

    def window(self) -> Window:
        return ProcessesWindow(self.server_pid, self.pids, self.cores)

    async def login_many(
        self,
        numbers: Iterable[int],
        concurrency: int,
        after: Callable[[int, Connection], Awaitable[None]] | None = None,
    ) -> list[Connection]:
        """The sessions `throughput` pairs up (sender, receiver, sender, ...), placed."""
        wanted = list(numbers)
        if self.placement == "any":
            return await super().login_many(wanted, concurrency, after)
        pool = self.pool
        extra = [(wanted[-1] + 1 + i) % pool for i in range((OVERSAMPLE - 1) * len(wanted))]
        conns = await super().login_many([*wanted, *extra], concurrency, after)
        by_node = await self._nodes_of(conns)
        pairs = len(wanted) // 2
        chosen = _place(by_node, pairs, self.placement)
        keep = {id(c) for c in chosen}
        for conn in conns:
            if id(conn) not in keep:
                conn.close()
        self.placed = {
            "placement": self.placement,
            "sessions_per_node": {node: len(c) for node, c in sorted(by_node.items())},
            "pairs": len(chosen) // 2,
        }
        if len(chosen) < 2 * pairs:
            raise XmppError(
                f"only {len(chosen) // 2} {self.placement}-worker pairs among {len(conns)}"
                f" sessions ({self.placed['sessions_per_node']})"
            )
        return chosen

    async def _nodes_of(self, conns: list[Connection]) -> dict[str, list[Connection]]:
        client = aioredis.Redis.from_url(self.redis_url)
        try:
            async with client.pipeline(transaction=False) as pipe:
                for conn in conns:
                    bare, _, resource = conn.jid.partition("/")
                    pipe.hget(f"{self.key_prefix}res:{bare}", resource)
                answers = await pipe.execute()
        finally:
            await client.aclose()
        by_node: dict[str, list[Connection]] = {}
        for conn, answer in zip(conns, answers, strict=True):
            if answer is None:
                raise XmppError(f"{conn.jid} is not in the cluster's session directory")
            node = answer.decode().split("|", 1)[0]
            by_node.setdefault(node, []).append(conn)
        return by_node

    async def throughput(
        self, pairs: int, window_size: int, warmup: float, duration: float
    ) -> dict[str, Any]:
        result = await super().throughput(pairs, window_size, warmup, duration)
        result.update(self.placed)
        return result


def _place(by_node: dict[str, list[Connection]], pairs: int, placement: str) -> list[Connection]:
    """`pairs` (sender, receiver) sessions, flattened: same node, or across nodes."""
    nodes = sorted(by_node)
    pools = {n: list(by_node[n]) for n in nodes}
    out: list[Connection] = []
    if placement == "same":
        for i in range(pairs):
            node = nodes[i % len(nodes)]
            if len(pools[node]) < 2:
                node = next((n for n in nodes if len(pools[n]) >= 2), "")
                if not node:
                    break
            out += [pools[node].pop(), pools[node].pop()]
        return out
    if len(nodes) < 2:
        return []
    for i in range(pairs):
        a, b = nodes[i % len(nodes)], nodes[(i + 1) % len(nodes)]
        if not pools[a] or not pools[b]:
            break
        out += [pools[a].pop(), pools[b].pop()]
    return out


async def cluster_login(runner: ClusterRunner, **params: Any) -> dict[str, Any]:
    return await runner.login_rate(**params)


async def cluster_throughput(runner: ClusterRunner, **params: Any) -> dict[str, Any]:
    return await runner.throughput(**params)


#: generator tasks of the cluster scenario; their params carry a "cluster" table
#: (ClusterRunner's keyword arguments)
CLUSTER_TASKS = {"cluster_login": cluster_login, "cluster_throughput": cluster_throughput}
