"""Generator entry point: `python -m bench.loadgen < spec.json > result.json`.

The orchestrator starts this as its own process pinned to another core than the server
(`taskset -c 1`), writes one JSON task on stdin and reads one JSON result from stdout. Logging
goes to stderr. Runs on uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from bench import procs
from bench.loadgen import authority
from bench.loadgen.bosh import BoshClient
from bench.loadgen.cluster import CLUSTER_TASKS, ClusterRunner
from bench.loadgen.mam import mam_pages, mam_provision
from bench.loadgen.muc import muc_fanout
from bench.loadgen.scenarios import AnyClient, Runner
from bench.loadgen.scram import ScramCache
from bench.loadgen.websocket import WsClient
from bench.loadgen.xmpp import Client, LoginOptions


def _new_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a chatgate dependency on Linux
        return asyncio.new_event_loop(), "asyncio"
    return uvloop.new_event_loop(), f"uvloop {uvloop.__version__}"


TASKS = {
    "login": Runner.login_rate,
    "throughput": Runner.throughput,
    "idle": Runner.idle,
    "fanout": Runner.fanout,
    "muc": muc_fanout,
    "mam": mam_pages,
    "mam_provision": mam_provision,
    "soak": Runner.soak,
    "provision_rosters": Runner.provision_rosters,
    "warm_accounts": Runner.warm_accounts,
}


async def _run(spec: dict[str, Any], loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """One task, or a batch of tasks run one after the other against the same server.

    A batch answers `{"results": [...]}` in order; a task that fails there answers
    `{"error": ...}` and the batch goes on with the next.
    """
    learned = spec.get("scram_learned")
    cache = ScramCache(Path(learned) if learned else None)
    if spec.get("preload_accounts", True):
        cache.preload_accounts(spec["users"])
    cache.load_learned()
    gc.collect()
    gc.freeze()  # setup garbage stays out of the way of measured windows

    def client_for(task: dict[str, Any]) -> AnyClient:
        transport = task.get("transport", "tcp")
        if transport == "tcp":
            opts = LoginOptions(
                port=spec["port"], mechanism=spec["mechanism"], starttls=task["starttls"]
            )
            return Client(loop, opts, cache)
        if not spec.get("http_port"):
            raise ValueError(f"{transport}: the server has no HTTP port")
        opts = LoginOptions(port=spec["http_port"], mechanism=spec["mechanism"])
        if transport == "bosh":
            return BoshClient(loop, opts, cache, spec["web_paths"]["bosh"])
        if transport == "websocket":
            return WsClient(loop, opts, cache, spec["web_paths"]["websocket"])
        raise ValueError(f"unknown transport {transport!r}")

    async def one(task: dict[str, Any]) -> dict[str, Any]:
        if task["task"] == "authority":  # HTTP hooks, no XMPP client
            return await authority.run(loop, spec, **task.get("params", {}))
        if task["task"] in CLUSTER_TASKS:  # `chatgate serve --workers` (bench/cluster.py)
            params = dict(task.get("params", {}))
            client = client_for(task)
            placed = ClusterRunner(
                loop,
                client,
                spec["server_pid"],
                spec["users"],
                spec["fanout_block"],
                **params.pop("cluster"),
            )
            try:
                return await CLUSTER_TASKS[task["task"]](placed, **params)
            finally:
                await client.shutdown()
        if task["task"] not in TASKS:
            raise ValueError(f"unknown task {task['task']!r}")
        client = client_for(task)
        runner = Runner(loop, client, spec["server_pid"], spec["users"], spec["fanout_block"])
        try:
            if not isinstance(client, Client):
                client.on_error = runner.note_error
                await runner.probe(client.url)
            return await TASKS[task["task"]](runner, **task.get("params", {}))
        finally:
            await client.shutdown()

    if "batch" not in spec:
        return await one(spec)
    results = []
    for task in spec["batch"]:
        try:
            results.append(await one(task))
        except Exception as e:
            traceback.print_exc()
            results.append({"error": f"{type(e).__name__}: {e}"[-2000:]})
    return {"results": results}


def main() -> None:
    spec = json.loads(sys.stdin.read())
    procs.raise_nofile()
    loop, loop_name = _new_loop()
    try:
        result = loop.run_until_complete(_run(spec, loop))
    finally:
        loop.close()
    result["event_loop"] = loop_name
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
