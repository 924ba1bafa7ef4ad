"""A chatgate cluster on this machine for end-to-end tests: N `chatgate serve`
processes (one node each, its own configuration, data folder, log and c2s port),
one redis-server (`tests/redis_server.py`) and one PostgreSQL
(`tests/postgres_server.py`; a shared SQLite file where PostgreSQL is not installed).

Every node runs exactly as an operator runs it: the CLI, a TOML file, loopback
ports picked free.  The database is migrated once, before any node starts (as
`serve --workers` does), so that three nodes never race to upgrade it.  Nodes are
stopped by PID: `stop()` is SIGTERM (a graceful leave), `kill()` is SIGKILL (a
crash the others must notice through the heartbeats).

The c2s listeners are plain TCP (`tls = "none"`, PLAIN allowed) to keep the tests
fast; nothing about clustering depends on TLS.
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
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.docblocks import blocks
from tests.e2e.conftest import RunningServer, free_ports
from tests.redis_server import RedisServer, start_redis

#: Heartbeats and timeout of the test cluster: a dead node is noticed within ~1.5 s.
HEARTBEAT = 0.2
NODE_TIMEOUT = 1.0


@dataclass
class ClusterNodeProcess:
    """One node: a `chatgate serve` process, restartable under the same name and port."""

    name: str
    folder: Path
    port: int
    server: RunningServer | None = None

    @property
    def config(self) -> Path:
        return self.folder / "chatgate.toml"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.process.pid

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process (appending to its log); `wait_listening` waits for it."""
        fh = self.log.open("ab")
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "chatgate", "serve", "--config", str(self.config)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            fh.close()
        self.server = RunningServer(
            process, self.config, self.folder / "var", 0, 0, self.port, self.log
        )
        return process

    def wait_listening(self, timeout: float = 30, *, since: int = 0) -> None:
        """Until the node logs its listener (after log offset `since`)."""
        assert self.server is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.process.poll() is not None:
                raise RuntimeError(f"node {self.name} exited early:\n{self.log_text()[since:]}")
            if "listening:" in self.log_text()[since:]:
                return
            time.sleep(0.05)
        raise RuntimeError(f"node {self.name} did not start:\n{self.log_text()[since:]}")

    def start(self) -> None:
        since = len(self.log_text())
        self.launch()
        self.wait_listening(since=since)

    def stop(self) -> int:
        """SIGTERM and wait: the node leaves the cluster gracefully."""
        assert self.server is not None
        return self.server.stop()

    def kill(self) -> None:
        """SIGKILL: no goodbye; the others must notice the missing heartbeats."""
        assert self.server is not None
        os.kill(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait(10)

    def wait_for_log(self, text: str, timeout: float = 10, *, since: int = 0) -> str:
        """The first log line after offset `since` containing `text`; fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_text()[since:].splitlines():
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"node {self.name}: no log line with {text!r} in {timeout} s")


@dataclass
class LocalCluster:
    """Redis, a database, and the nodes; `close()` stops everything this started."""

    folder: Path
    redis: RedisServer
    storage_url: str
    nodes: dict[str, ClusterNodeProcess] = field(default_factory=dict)
    postgres: object | None = None  # tests.postgres_server.PostgresServer

    def __getitem__(self, name: str) -> ClusterNodeProcess:
        return self.nodes[name]

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """The `chatgate` command against the shared database (through the first node's
        configuration: any node's would do)."""
        node = next(iter(self.nodes.values()))
        assert node.server is not None
        return node.server.cli(*args, stdin=stdin)

    def add_user(self, name: str, password: str) -> None:
        result = self.cli("user", "add", name, "--password-stdin", stdin=password + "\n")
        assert result.returncode == 0, result.stderr

    def logs(self) -> dict[str, str]:
        return {name: node.log_text() for name, node in self.nodes.items()}

    def save_logs(self, destination: Path) -> None:
        destination.mkdir(parents=True, exist_ok=True)
        for name, node in self.nodes.items():
            if node.log.exists():
                shutil.copyfile(node.log, destination / f"{name}.log")

    def close(self) -> dict[str, int]:
        """Stop every node still running (SIGTERM), Redis and the database; returns
        each stopped node's exit code."""
        codes = {}
        for name, node in self.nodes.items():
            if node.running:
                with contextlib.suppress(Exception):
                    codes[name] = node.stop()
        self.redis.stop()
        postgres = self.postgres
        if postgres is not None:
            postgres.close()  # type: ignore[attr-defined]
        return codes


def documented_tables() -> tuple[dict[str, object], dict[str, object]]:
    """The `[storage]` and `[cluster]` tables of docs/cluster.md, as an operator
    copies them: the nodes run them with the test's own addresses and timeouts."""
    storage: dict[str, object] | None = None
    cluster: dict[str, object] | None = None
    for block in blocks("toml"):
        if block.page != "docs/cluster.md":
            continue
        table = tomllib.loads(block.text)
        storage = table.get("storage", storage)
        cluster = table.get("cluster", cluster)
    assert storage is not None and cluster is not None, "docs/cluster.md lost a table"
    return storage, cluster


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def node_config(
    name: str, folder: Path, port: int, storage_url: str, redis_url: str, extra: str
) -> str:
    """A node's `chatgate.toml`: docs/cluster.md's `[storage]` and `[cluster]`
    tables with this test's values.  `extra` is appended (further tables)."""
    storage, cluster = documented_tables()
    storage = {**storage, "url": storage_url}
    cluster = {
        **cluster,
        "redis_url": redis_url,
        "node": name,
        "heartbeat_interval": HEARTBEAT,
        "node_timeout": NODE_TIMEOUT,
    }
    storage_table = "\n".join(f"{k} = {_toml_value(v)}" for k, v in storage.items())
    cluster_table = "\n".join(f"{k} = {_toml_value(v)}" for k, v in cluster.items())
    return f"""
[server]
domain = "localhost"
data_dir = "{folder / "var"}"
log_level = "info"
shutdown_grace = 2.0

[[listeners]]
port = {port}
tls = "none"
require_tls = false

[http]
enabled = false

[storage]
{storage_table}

[auth]
mechanisms = ["SCRAM-SHA-1", "PLAIN"]
allow_plain_without_tls = true

[cluster]
{cluster_table}
{extra}
"""


def shared_database(folder: Path) -> tuple[str, object | None]:
    """The storage every node shares: a fresh PostgreSQL when it is installed (the
    issue's topology), else one SQLite file (BEGIN IMMEDIATE serialises writers)."""
    from tests.postgres_server import postgres_available, start_postgres

    if postgres_available():
        postgres = start_postgres()
        return postgres.url, postgres
    return f"sqlite+aiosqlite:///{folder / 'shared.db'}", None


def migrate(storage_url: str) -> None:
    """Upgrade the shared database once, before any node starts."""
    from chatgate.storage.database import Database

    async def run() -> None:
        db = await Database.open(storage_url)
        await db.close()

    asyncio.run(run())


def import_users(config: Path, users: dict[str, str]) -> None:
    """Create `users` (name -> password) with `chatgate user import`, one command."""
    accounts = config.parent / "accounts.txt"
    accounts.write_text("".join(f"{name} {password}\n" for name, password in users.items()))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatgate",
            "user",
            "import",
            str(accounts),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    accounts.unlink()
    assert done.returncode == 0, done.stdout + done.stderr


def start_cluster(
    names: tuple[str, ...] = ("n1", "n2", "n3"),
    extra: str = "",
    users: dict[str, str] | None = None,
) -> LocalCluster:
    """Start Redis and the database, migrate, create `users`, then start one node per
    name (in parallel) and wait until each listens."""
    folder = Path(tempfile.mkdtemp(prefix="chatgate-cluster-"))
    redis = start_redis()
    storage_url, postgres = shared_database(folder)
    cluster = LocalCluster(folder, redis, storage_url, postgres=postgres)
    try:
        migrate(storage_url)
        for name, port in zip(names, free_ports(len(names)), strict=True):
            node_folder = folder / name
            node_folder.mkdir()
            node = ClusterNodeProcess(name, node_folder, port)
            node.config.write_text(
                node_config(name, node_folder, port, storage_url, redis.url, extra)
            )
            cluster.nodes[name] = node
        if users:
            import_users(cluster.nodes[names[0]].config, users)
        for node in cluster.nodes.values():
            node.launch()
        for node in cluster.nodes.values():
            node.wait_listening()
    except BaseException:
        cluster.close()
        raise
    return cluster


def serving_cleanly(
    names: tuple[str, ...], users: dict[str, str], extra: str = ""
) -> Iterator[LocalCluster]:
    """A fixture's cluster: started, then stopped with SIGTERM (each node leaves
    gracefully); every node must exit 0 and have logged no traceback."""
    cluster = start_cluster(names, extra, users)
    try:
        yield cluster
    finally:
        codes = cluster.close()
        logs = cluster.logs()
        shutil.rmtree(cluster.folder, ignore_errors=True)
    assert all(code == 0 for code in codes.values()), codes
    for name, text in logs.items():
        assert "Traceback" not in text, f"{name}:\n{text}"


#: where failed tests' node logs go (CI keeps the folder as an artifact)
ARTIFACTS = Path(
    os.environ.get(
        "CHATGATE_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"
    )
)


def logs_kept_on_failure(request: pytest.FixtureRequest, cluster: LocalCluster) -> Iterator[None]:
    """The body of a test module's autouse fixture: when the test fails, every node's
    log so far is saved under ARTIFACTS/MODULE/TEST (the cluster outlives the test)."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        module = request.module.__name__.rpartition(".")[2]
        cluster.save_logs(ARTIFACTS / module / name)
