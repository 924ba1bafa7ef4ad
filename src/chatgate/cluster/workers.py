"""`chatgate serve --workers N`: one machine, N server processes sharing its ports.

The parent process serves nothing itself.  It

1. refuses to start without `[cluster] enabled` (the workers deliver to each other's
   sessions only through Redis), or with a listener on port 0 (each worker would
   get a port of its own);
2. does once what every worker would otherwise race to do at start: migrate the
   database, store the installation secret, generate the self-signed certificate,
   and checks that Redis answers;
3. spawns N workers (`multiprocessing`'s *spawn*: a fresh interpreter, no state
   inherited from the parent), each running the ordinary server with node name
   `<node or host>-w<i>` and every listener bound with SO_REUSEPORT, so the kernel
   spreads connections over them;
4. forwards SIGTERM and SIGINT to the workers and waits for their graceful stop
   (`[server] shutdown_grace`, then some), killing those that overstay;
5. restarts a worker that dies unexpectedly, after a delay that doubles while it
   keeps dying young (`RestartBackoff`), and says so in the log.  A worker that
   exits with code 2 (its configuration was refused) is not restarted: everything
   stops with that code.

Must not: serve connections, or hold any state a worker needs (a worker restarted
after a crash starts exactly as the first one did).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Protocol

from chatgate.config import REUSE_PORT_NEEDS_CLUSTER, Config, TlsMode
from chatgate.vocabulary.errors import ConfigError

log = logging.getLogger(__name__)

#: Exit code of a worker whose configuration was refused (as `chatgate serve`'s).
CONFIG_REFUSED = 2
#: Seconds a worker may take to stop past `[server] shutdown_grace` before it is killed.
STOP_MARGIN = 10.0
LOG_FORMAT = "%(asctime)s %(levelname)-7s {who} %(name)s: %(message)s"


def worker_count(value: str) -> int:
    """`--workers`: a positive number, or `0`/`auto` for one per usable core.
    Raises `ValueError` for anything else."""
    text = value.strip().lower()
    if text in ("0", "auto"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return max(1, os.cpu_count() or 1)
    count = int(text)
    if count < 0:
        raise ValueError("a number of workers is 0 (one per core), 'auto' or more")
    return count


def worker_node_name(config: Config, index: int) -> str:
    """`<[cluster] node, else the host name>-w<index>`: stable over restarts, so that a
    worker restarted under its name is seen by the others as that node restarted
    (its sessions are gone) rather than as a new node beside a dead one."""
    base = config.cluster.node or re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())
    suffix = f"-w{index}"
    return (base or "node")[: 63 - len(suffix)] + suffix


def worker_config(config: Config, index: int) -> Config:
    """What worker `index` runs: the same configuration, its own node name, every
    listener bound with SO_REUSEPORT (the HTTP ports follow, `shares_ports`)."""
    cluster = config.cluster.model_copy(update={"node": worker_node_name(config, index)})
    listeners = [listener.model_copy(update={"reuse_port": True}) for listener in config.listeners]
    return config.model_copy(update={"cluster": cluster, "listeners": listeners})


def check_workers_allowed(config: Config) -> None:
    """Raise `ConfigError` where `--workers` cannot work."""
    if not config.cluster.enabled:
        raise ConfigError(f"--workers {REUSE_PORT_NEEDS_CLUSTER}")
    for index, listener in enumerate(config.listeners):
        if listener.port == 0:
            raise ConfigError(
                f"listeners.{index}.port: 0 picks a free port per process; --workers needs"
                " a fixed port that every worker shares"
            )
    http = config.http
    if http.enabled and (http.port == 0 or (http.tls_port is not False and http.tls_port == 0)):
        raise ConfigError(
            "[http] port and tls_port: 0 picks a free port per process; --workers needs"
            " fixed ports (or false)"
        )


async def prepare_shared_state(config: Config) -> None:
    """Once, in the parent, before any worker starts: the migrations (several workers
    upgrading one database at once is what must not happen), the installation
    secret, the generated certificate; and a look at Redis, so that an unreachable
    one is one clear error rather than N workers failing in turn."""
    from chatgate.datadir import secure_data_dir
    from chatgate.server import load_sasl_secret
    from chatgate.storage.database import Database

    secure_data_dir(config.data_dir)
    db = await Database.open(config.storage_url)
    try:
        await load_sasl_secret(db.secrets, config.data_dir)
    finally:
        await db.close()
    if any(listener.tls is not TlsMode.NONE for listener in config.listeners) or (
        config.http.enabled and config.http.tls_port is not False
    ):
        from chatgate.tls import ensure_certificate

        ensure_certificate(config)
        secure_data_dir(config.data_dir, level=logging.DEBUG)  # what was just made there
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(config.cluster.redis_url, socket_connect_timeout=2.0)
    try:
        await client.ping()
    except Exception as exc:
        raise ConfigError(
            f"[cluster] redis_url {without_password(config.cluster.redis_url)} cannot be"
            f" reached: {exc}"
        ) from None
    finally:
        await client.aclose()


def without_password(url: str) -> str:
    """A Redis URL fit for logs and `chatgate check`."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def run_worker(config: Config, index: int) -> None:
    """A worker's whole life (the target of its process): log with its name, run the
    server until SIGTERM/SIGINT, exit 0; 2 for a refused configuration, 1 when it
    cannot start."""
    import sys

    logging.basicConfig(
        level=config.server.log_level.upper(),
        format=LOG_FORMAT.format(who=f"[w{index}]"),
        force=True,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from chatgate.cluster.node import ClusterUnavailable
    from chatgate.server import run

    try:
        run(config)
    except ConfigError as exc:
        log.error("worker %d: %s", index, exc)
        sys.exit(CONFIG_REFUSED)
    except Exception as exc:
        # A port taken or Redis out of reach is said in one line; anything else
        # is a bug, with its traceback.
        expected = isinstance(exc, (OSError, ClusterUnavailable))
        log.error("worker %d cannot run: %s", index, exc, exc_info=not expected)
        sys.exit(1)


@dataclass
class RestartBackoff:
    """How long to wait before restarting a worker that died: `initial`, doubled at
    each death that follows a short life (under `stable_after` seconds), up to
    `maximum`; a worker that lived long enough starts again from `initial`.  Pure:
    times are passed in."""

    initial: float = 0.5
    maximum: float = 30.0
    stable_after: float = 30.0
    _next: float = field(default=0.0, init=False)

    def delay(self, lived: float) -> float:
        if lived >= self.stable_after or self._next == 0.0:
            self._next = self.initial
        else:
            self._next = min(self.maximum, self._next * 2)
        return self._next


class ProcessStarter(Protocol):
    def __call__(self, config: Config, index: int) -> BaseProcess: ...


def spawn_worker(config: Config, index: int) -> BaseProcess:
    """Start worker `index` in a fresh interpreter (spawn: nothing of the parent's
    state, loop or threads is inherited)."""
    context = multiprocessing.get_context("spawn")
    process = context.Process(
        target=run_worker, args=(worker_config(config, index), index), name=f"chatgate-w{index}"
    )
    process.start()
    return process


@dataclass
class _Worker:
    index: int
    process: BaseProcess | None = None
    started: float = 0.0
    restart_at: float | None = None
    backoff: RestartBackoff = field(default_factory=RestartBackoff)


class WorkerSupervisor:
    """The parent's loop: start the workers, restart the ones that die, stop them all
    on SIGTERM/SIGINT.  `run()` returns the exit code for `chatgate serve`."""

    def __init__(
        self,
        config: Config,
        count: int,
        *,
        starter: ProcessStarter = spawn_worker,
        backoff: RestartBackoff | None = None,
    ) -> None:
        self.config = config
        self.workers = [_Worker(i) for i in range(1, count + 1)]
        if backoff is not None:
            for worker in self.workers:
                worker.backoff = RestartBackoff(
                    backoff.initial, backoff.maximum, backoff.stable_after
                )
        self._starter = starter
        self._stopping: int | None = None  # the signal that asked for the stop
        self._code = 0

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop every worker (a signal handler calls this; so may a test)."""
        if self._stopping is None:
            self._stopping = signum
            log.info("workers: stopping (%s)", signal.Signals(signum).name)
            for worker in self.workers:
                if worker.process is not None and worker.process.is_alive():
                    _signal(worker.process, signal.SIGTERM)

    def run(self, *, install_signals: bool = True) -> int:
        if install_signals:
            previous = {
                sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
            }
        try:
            for worker in self.workers:
                self._start(worker)
            log.info("workers: %d started (%s)", len(self.workers), self.pids_text())
            while self._stopping is None:
                self._watch(0.5)
            return self._stop_all()
        finally:
            if install_signals:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    def pids_text(self) -> str:
        return ", ".join(
            f"w{w.index} pid {w.process.pid}" for w in self.workers if w.process is not None
        )

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.request_stop(signum)

    def _start(self, worker: _Worker) -> None:
        worker.process = self._starter(self.config, worker.index)
        worker.started = time.monotonic()
        worker.restart_at = None

    def _watch(self, timeout: float) -> None:
        """Wait for a worker to end (or `timeout`); schedule or perform restarts."""
        now = time.monotonic()
        pending = [w.restart_at for w in self.workers if w.restart_at is not None]
        if pending:
            timeout = max(0.0, min(timeout, min(pending) - now))
        sentinels = [w.process.sentinel for w in self.workers if w.process is not None]
        if sentinels:
            wait(sentinels, timeout)
        else:
            time.sleep(timeout)
        if self._stopping is not None:
            return
        now = time.monotonic()
        for worker in self.workers:
            process = worker.process
            if process is not None and not process.is_alive():
                process.join()
                code = process.exitcode
                worker.process = None
                if code == CONFIG_REFUSED:
                    log.error(
                        "workers: w%d refused its configuration (exit code 2): stopping",
                        worker.index,
                    )
                    self._code = CONFIG_REFUSED
                    self.request_stop()
                    return
                delay = worker.backoff.delay(now - worker.started)
                worker.restart_at = now + delay
                log.warning(
                    "workers: w%d (pid %s) died unexpectedly (%s): restarting in %.1f s",
                    worker.index,
                    process.pid,
                    _how(code),
                    delay,
                )
            elif (
                worker.process is None
                and worker.restart_at is not None
                and now >= worker.restart_at
            ):
                self._start(worker)
                assert worker.process is not None
                log.info("workers: w%d restarted (pid %s)", worker.index, worker.process.pid)

    def _stop_all(self) -> int:
        """SIGTERM was sent (`request_stop`); wait for each worker, kill the late ones."""
        deadline = time.monotonic() + self.config.server.shutdown_grace + STOP_MARGIN
        for worker in self.workers:
            process = worker.process
            if process is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.warning(
                    "workers: w%d (pid %s) did not stop in time: killed", worker.index, process.pid
                )
                _signal(process, signal.SIGKILL)
                process.join()
                self._code = self._code or 1
            elif process.exitcode not in (0, None) and not self._code:
                log.warning("workers: w%d stopped with %s", worker.index, _how(process.exitcode))
        log.info("workers: all stopped")
        return self._code


def _signal(process: BaseProcess, signum: int) -> None:
    if process.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def _how(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def serve_workers(config: Config, count: int) -> int:
    """`chatgate serve --workers COUNT`: check, prepare once, supervise.  Returns the
    exit code; raises `ConfigError` before anything starts when it cannot work."""
    check_workers_allowed(config)
    asyncio.run(prepare_shared_state(config))
    log.info("workers: starting %d (one chatgate process each, ports shared)", count)
    return WorkerSupervisor(config, count).run()
