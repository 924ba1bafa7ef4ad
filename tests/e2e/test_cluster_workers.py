"""`chatgate serve --workers 2` as an operator runs it: one parent, two worker
processes on the same port (SO_REUSEPORT), one redis-server, one database.

Clients connect to the one port and the kernel spreads them over the workers; every
pair must be able to talk, whichever workers they landed on.  A worker killed with
SIGKILL is restarted by the parent (logged) and serves again; SIGTERM to the parent
stops every worker gracefully (exit 0, nothing left running).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import start_redis

from .cluster_harness import import_users, migrate, shared_database
from .conftest import Client, RunningServer, connect, free_ports

pytestmark = pytest.mark.e2e

USERS = {f"user{i}": f"user{i}-secret-1" for i in range(8)}


class Workers:
    def __init__(self, folder: Path, process: subprocess.Popen[bytes], server: RunningServer):
        self.folder = folder
        self.process = process
        self.server = server
        self.http_port = 0

    def log_text(self) -> str:
        return self.server.log_text()

    def pids(self) -> dict[str, int]:
        """Each worker's latest pid, from the parent's log lines."""
        found: dict[str, int] = {}
        for worker, pid in re.findall(r"\b(w\d+) pid (\d+)", self.log_text()):
            found[worker] = int(pid)
        for worker, pid in re.findall(r"(w\d+) restarted \(pid (\d+)\)", self.log_text()):
            found[worker] = int(pid)
        return found

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.log_text())) >= count:
                return
            if self.process.poll() is not None:
                raise AssertionError(f"the parent exited:\n{self.log_text()}")
            time.sleep(0.05)
        raise AssertionError(f"no {count} x {pattern!r} in the log:\n{self.log_text()[-4000:]}")


@pytest.fixture(scope="module")
def workers() -> Iterator[Workers]:
    folder = Path(tempfile.mkdtemp(prefix="chatgate-workers-"))
    redis = start_redis()
    storage_url, postgres = shared_database(folder)
    port, http_port, https_port = free_ports(3)
    config = folder / "chatgate.toml"
    config.write_text(
        f"""
[server]
domain = "localhost"
data_dir = "{folder / "var"}"
shutdown_grace = 2.0

[[listeners]]
port = {port}
tls = "none"
require_tls = false

[http]
port = {http_port}
tls_port = {https_port}

[storage]
url = "{storage_url}"

[auth]
mechanisms = ["SCRAM-SHA-1", "PLAIN"]
allow_plain_without_tls = true

[cluster]
enabled = true
redis_url = "{redis.url}"
node = "box"
heartbeat_interval = 0.2
node_timeout = 1.0
"""
    )
    try:
        migrate(storage_url)
        import_users(config, USERS)
        log = folder / "server.log"
        with log.open("wb") as fh:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chatgate",
                    "serve",
                    "--config",
                    str(config),
                    "--workers",
                    "2",
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        server = RunningServer(process, config, folder / "var", 0, 0, port, log)
        running = Workers(folder, process, server)
        running.wait_for(r"listening:", 2)
        running.wait_for(r"web: BOSH and WebSocket on https://", 2)
        running.http_port = http_port
        yield running
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    finally:
        redis.stop()
        if postgres is not None:
            postgres.close()  # type: ignore[attr-defined]
        shutil.rmtree(folder, ignore_errors=True)


async def _clients(workers: Workers, names: list[str]) -> list[Client]:
    return [
        await connect(workers.server, f"{n}@localhost/r", USERS[n], transport="plain")
        for n in names
    ]


async def _which_worker(workers: Workers, jid: str) -> str:
    """The worker a session landed on: the one that logged its login."""
    for line in workers.log_text().splitlines():
        if jid in line and "[w" in line:
            match = re.search(r"\[(w\d+)\]", line)
            if match:
                return match.group(1)
    return "?"


async def test_every_pair_talks_whichever_worker_it_landed_on(workers: Workers) -> None:
    names = [f"user{i}" for i in range(6)]
    clients = await _clients(workers, names)
    try:
        for sender in clients:
            for receiver in clients:
                if sender is not receiver:
                    sender.send_message(
                        mto=receiver.boundjid.full,
                        mbody=f"{sender.boundjid.user}>{receiver.boundjid.user}",
                    )
        for receiver in clients:
            bodies = set()
            while len(bodies) < len(clients) - 1:
                bodies.add((await receiver.next_message())["body"])
            assert all(b.endswith(">" + receiver.boundjid.user) for b in bodies)
        landed = {await _which_worker(workers, f"{n}@localhost") for n in names}
        print("sessions landed on", sorted(landed))
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5)


def test_both_workers_serve_the_http_port_too(workers: Workers) -> None:
    """The HTTP(S) listener shares its ports like c2s (`shares_ports`): both workers
    bound them, and the port answers."""
    import urllib.request

    log = workers.log_text()
    for worker in ("w1", "w2"):
        assert re.search(rf"\[{worker}\] .*web: BOSH and WebSocket on http://", log), worker
    for _ in range(4):
        url = f"http://127.0.0.1:{workers.http_port}/.well-known/host-meta"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200


async def test_a_killed_worker_is_restarted_and_serves_again(workers: Workers) -> None:
    victim = workers.pids()["w1"]
    os.kill(victim, signal.SIGKILL)
    workers.wait_for(r"w1 \(pid \d+\) died unexpectedly \(signal SIGKILL\): restarting in")
    workers.wait_for(r"w1 restarted \(pid \d+\)")
    workers.wait_for(r"listening:", 3)
    assert workers.pids()["w1"] != victim
    clients = await _clients(workers, ["user6", "user7"])
    try:
        clients[0].send_message(mto="user7@localhost/r", mbody="after the restart")
        assert (await clients[1].next_message())["body"] == "after the restart"
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5)


def test_sigterm_stops_every_worker_gracefully(workers: Workers) -> None:
    pids = workers.pids()
    workers.process.send_signal(signal.SIGTERM)
    assert workers.process.wait(30) == 0
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "workers: all stopped" in workers.log_text()
    assert "Traceback" not in workers.log_text(), workers.log_text()[-4000:]
