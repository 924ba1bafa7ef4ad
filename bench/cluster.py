"""The cluster scenario (issue 14): what the cluster layer costs one node, and what a
second worker brings, on this machine.

Three set-ups of chatgate, each started fresh from the chatgate peer's prepared
data (the same accounts, a copy of its SQLite database); ``off`` and ``w1`` side
by side, their windows alternating (`GROUPS`), then ``w2`` alone:

- ``off``: today's single process, no `[cluster]` (the baseline);
- ``w1``: `chatgate serve --workers 1` with `[cluster] enabled` and a redis-server
  of the bench's own (the cluster layer on, one node);
- ``w2``: `chatgate serve --workers 2`, the workers sharing the c2s port
  (SO_REUSEPORT).

Each is measured for logins/s (K workers, the kernel spreading connections) and
messages/s: pairs on the same worker, and for ``w2`` pairs across workers (the
generator looks each session's worker up in Redis, `bench/loadgen/cluster.py`).
The targets: ``w1`` loses at most 10 % of ``off``; across workers, messages/s are
at least 0.8 x same-worker.

Cores: ``off`` and ``w1`` run on core 0 as every peer does; ``w2``'s workers on
cores 0 and 1, so the second worker shares core 1 with the generator (this
machine has two): each figure's window says what was busy (`bound`).
Redis is not pinned; its CPU is reported apart.

Must not: change what the other scenarios measure (it starts its own processes,
after them, and stops them by PID).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import accounts, procs
from bench.peers import PeerSetup
from bench.peers.chatgate import CONFIG, chatgate_command

if TYPE_CHECKING:
    from bench.plan import Plan
    from bench.run import Generator

log = logging.getLogger(__name__)

#: Redis key prefix and node name of the bench's cluster (workers are NODE-w1, ...)
PREFIX = "chatgate:"
NODE = "bench"
NO_HTTP = (
    "\n[http]\n# Not measured here; off, so no worker binds the HTTP ports.\nenabled = false\n"
)
CLUSTER = """
[cluster]
enabled = true
redis_url = "{url}"
node = "{node}"
key_prefix = "{prefix}"
"""


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    #: `--workers N`; 0: one process without the cluster layer
    workers: int
    #: `taskset -c` of the server processes
    cores: str
    #: the message placements measured
    placements: tuple[str, ...]


VARIANTS = (
    Variant("off", 0, str(procs.SERVER_CORE), ("any",)),
    Variant("w1", 1, str(procs.SERVER_CORE), ("same",)),
    Variant("w2", 2, f"{procs.SERVER_CORE},{procs.GENERATOR_CORE}", ("same", "cross")),
)


class BenchRedis:
    """A redis-server of the bench's own: loopback, a free port, no persistence, by PID."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = procs.free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> int:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self.proc.pid
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, 5)
            self.proc = None


def available() -> str | None:
    """None when the scenario can run here, else why not."""
    if shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists():
        return "redis-server is not installed (tests/install-system-deps.sh installs it)"
    return None


def config_text(setup: PeerSetup, data: Path, port: int, redis_url: str | None) -> str:
    """The chatgate peer's configuration (same limits, throttles off, SQLite), HTTP off,
    with `[cluster]` when `redis_url` is given."""
    text = CONFIG.format(
        domain=accounts.DOMAIN,
        data=data,
        port=port,
        cert=setup.cert.certificate,
        key=setup.cert.private_key,
        http=NO_HTTP,
        streams="",
    )
    if redis_url is not None:
        text += CLUSTER.format(url=redis_url, node=NODE, prefix=PREFIX)
    return text


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the workers and multiprocessing's tracker)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rindex(b")") + 2 :].split()
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return sorted(out)


def listening_pids(port: int, pids: list[int]) -> set[int]:
    """Which of `pids` hold a socket listening on 127.0.0.1:`port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    found = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = fd.readlink().name
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                found.add(pid)
                break
    return found


class RunningVariant:
    """One set-up started: its processes and what the generator needs about them."""

    def __init__(self, variant: Variant, folder: Path, setup: PeerSetup) -> None:
        self.variant = variant
        self.folder = folder
        self.setup = setup
        self.port = procs.free_port()
        self.redis: BenchRedis | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "chatgate.log"

    def start(self) -> int:
        variant = self.variant
        if self.folder.exists():
            shutil.rmtree(self.folder)
        data = self.folder / "var"
        shutil.copytree(self.setup.workdir / "var", data)
        redis_url = None
        if variant.workers:
            self.redis = BenchRedis(self.folder / "redis")
            self.redis.start()
            redis_url = self.redis.url
        config = self.folder / "chatgate.toml"
        config.write_text(config_text(self.setup, data, self.port, redis_url))
        argv = [*chatgate_command(), "serve", "--config", str(config)]
        if variant.workers:
            argv += ["--workers", str(variant.workers)]
        self.proc = procs.start_pinned(argv, core=variant.cores, log_path=self.log, cwd=self.folder)
        procs.wait_for_port(self.port, self.proc, 60, self.log)
        if variant.workers:
            self._wait_for_workers(variant.workers)
        return self.proc.pid

    def _wait_for_workers(self, count: int, timeout: float = 60) -> None:
        """Until `count` workers listen: SO_REUSEPORT sends connections only to those that
        do, and a same/cross placement needs every one."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chatgate exited:\n{procs.tail(self.log)}")
            if len(listening_pids(self.port, children(self.proc.pid))) >= count:
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"{count} workers not listening after {timeout} s:\n{procs.tail(self.log)}"
        )

    def pids(self) -> dict[str, int]:
        """What the window measures: the server processes, and Redis apart."""
        assert self.proc is not None
        out = {"server": self.proc.pid}
        for i, pid in enumerate(children(self.proc.pid), 1):
            out[f"child{i}"] = pid
        if self.redis is not None and self.redis.proc is not None:
            out["redis"] = self.redis.proc.pid
        return out

    def cluster_params(self, placement: str) -> dict[str, Any]:
        return {
            "pids": self.pids(),
            "cores": len(self.variant.cores.split(",")),
            "redis_url": self.redis.url if self.redis is not None else "",
            "key_prefix": PREFIX,
            "placement": placement,
        }

    def stop(self) -> None:
        try:
            if self.proc is not None:
                procs.stop(self.proc, 30)
                self.proc = None
        finally:
            if self.redis is not None:
                self.redis.stop()
                self.redis = None


#: Set-ups started together, their windows alternating.  ``off`` and ``w1`` are
#: compared with each other (the "cluster on / off" targets), and this host's speed
#: drifts by up to a quarter over minutes: measured one after the other, the two
#: windows of a ratio were some 20 s apart, and the drift went into the ratio.  Up
#: at once, each idle while the other is measured (both on core 0), their windows
#: are seconds apart.  ``w2`` takes both cores, so it runs alone.
GROUPS: tuple[tuple[str, ...], ...] = (("off", "w1"), ("w2",))


def measure(
    peer: Any, setup: PeerSetup, gen: Generator, plan: Plan, rep: int = 1
) -> dict[str, Any]:
    """Every variant, by `GROUPS`: {variant: {"login": ..., placement: ...}}.  Within a
    group each step (logins, then each placement) is measured on every variant in
    turn, first one variant, then the other on the next repetition (`rep`), so
    neither always comes first.  A variant that fails records its error and the
    others still run."""
    why = available()
    if why is not None:
        raise RuntimeError(why)
    out: dict[str, Any] = {}
    root = setup.workdir.parent / "cluster"
    variants = {variant.name: variant for variant in VARIANTS}
    for group in GROUPS:
        names = list(group) if rep % 2 else list(reversed(group))
        running = {name: RunningVariant(variants[name], root / name, setup) for name in names}
        try:
            for name in names:
                out[name] = {}
                try:
                    running[name].start()
                except Exception as e:  # one set-up failing must not hide the others
                    out[name]["error"] = _error(e)
                    _stop(running[name])  # not left busy beside its partner
            for step in _steps(variants, names):
                for name in names:
                    if "error" in out[name]:
                        continue
                    if step != "login" and step not in variants[name].placements:
                        continue
                    try:
                        out[name][step] = _measure_step(peer, running[name], step, gen, plan)
                    except Exception as e:
                        out[name]["error"] = _error(e)
                        _stop(running[name])
        finally:
            for one in running.values():
                _stop(one)
    return {name: out[name] for name in variants if name in out}


def _steps(variants: dict[str, Variant], names: list[str]) -> list[str]:
    """Logins, then every placement any of `names` measures, in order."""
    steps = ["login"]
    for name in names:
        steps += [p for p in variants[name].placements if p not in steps]
    return steps


def _stop(running: RunningVariant) -> None:
    """Stop a set-up; a failure is logged, so that the others are stopped too."""
    try:
        running.stop()
    except Exception:
        log.exception("bench: stopping cluster set-up %s failed", running.variant.name)


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[-3000:]


def _measure_step(peer: Any, running: RunningVariant, step: str, gen: Generator, plan: Plan) -> Any:
    """One window on a started set-up: logins/s, or messages/s for a placement."""
    assert running.proc is not None
    if step == "login":
        return gen.run(
            peer,
            running.proc.pid,
            running.port,
            "cluster_login",
            {
                "workers": plan.login_workers,
                "warmup": plan.warmup,
                "duration": plan.duration,
                "cluster": running.cluster_params("any"),
            },
            starttls=False,
        )
    return gen.run(
        peer,
        running.proc.pid,
        running.port,
        "cluster_throughput",
        {
            "pairs": plan.pairs,
            "window_size": plan.cluster_window,
            "warmup": plan.warmup,
            "duration": plan.duration,
            "cluster": running.cluster_params(step),
        },
        starttls=False,
    )
