"""The message archive scenario (issue 15): pages of 50 from an archive of N messages,
chatgate only (Prosody's bench configuration loads no archive, so there is nothing to
compare; the target is absolute: p99 < 20 ms over 100,000 messages).

The chatgate peer's bench configuration turns the archive off, so that every other
scenario compares the same work as the peers.  This scenario therefore starts a
chatgate of its own, as the cluster scenario does: the same configuration (limits,
throttles off, SQLite, HTTP off) with `[modules.mam] enabled = true` and nothing else
changed, on a copy of the prepared data directory (the same accounts).

Once per run the archive is filled (`mam_provision` in bench/loadgen/mam.py: N messages
from user 0 to user 1 through the server) on a server of its own, which is then stopped
(a graceful stop writes what is queued); each repetition then measures on a fresh start
from a copy of that filled directory, pinned to the server core like every peer.  Nothing
is kept between runs.

Must not: change what the other scenarios measure (its processes are its own, started
after theirs and stopped by PID).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import procs
from bench.cluster import config_text
from bench.peers import PeerSetup
from bench.peers.chatgate import chatgate_command

if TYPE_CHECKING:
    from bench.plan import Plan
    from bench.run import Generator

ARCHIVE_OFF = "[modules.mam]\nenabled = false\n"
ARCHIVE_ON = (
    "[modules.mam]\n# The message archive scenario (bench/mam.py): the archive on, its "
    "defaults.\nenabled = true\n"
)


def mam_config(setup: PeerSetup, data: Path, port: int) -> str:
    """The chatgate peer's configuration (HTTP off) with the archive on."""
    text = config_text(setup, data, port, None)
    if text.count(ARCHIVE_OFF) != 1:
        raise RuntimeError("the bench configuration no longer turns [modules.mam] off as expected")
    return text.replace(ARCHIVE_OFF, ARCHIVE_ON)


class ArchiveServer:
    """One chatgate with the archive on, on its own data directory, stopped by PID."""

    def __init__(self, folder: Path, setup: PeerSetup, data_from: Path) -> None:
        self.folder = folder
        self.setup = setup
        self.data_from = data_from
        self.port = procs.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "chatgate.log"

    @property
    def data(self) -> Path:
        return self.folder / "var"

    def start(self, cores: str = str(procs.SERVER_CORE)) -> int:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        shutil.copytree(self.data_from, self.data)
        config = self.folder / "chatgate.toml"
        config.write_text(mam_config(self.setup, self.data, self.port))
        argv = [*chatgate_command(), "serve", "--config", str(config)]
        self.proc = procs.start_pinned(argv, core=cores, log_path=self.log, cwd=self.folder)
        procs.wait_for_port(self.port, self.proc, 60, self.log)
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, 60)
            self.proc = None


class MamBench:
    """The scenario across a run's repetitions: the archive filled once, measured each time."""

    def __init__(self, setup: PeerSetup) -> None:
        self.setup = setup
        self.root = setup.workdir.parent / "mam"
        self.filled: Path | None = None
        self.provisioning: dict[str, Any] = {}

    def fill(self, peer: Any, gen: Generator, plan: Plan) -> Path:
        """The archive of `plan.mam_messages`, on both cores (not measured); its data
        directory, kept for the repetitions."""
        if self.filled is not None:
            return self.filled
        server = ArchiveServer(self.root / "fill", self.setup, self.setup.workdir / "var")
        t0 = time.perf_counter()
        try:
            pid = server.start(cores=f"{procs.SERVER_CORE},{procs.GENERATOR_CORE}")
            result = gen.run(
                peer,
                pid,
                server.port,
                "mam_provision",
                {
                    "messages": plan.mam_messages,
                    "window_size": plan.mam_fill_window,
                    "chunk": plan.mam_fill_chunk,
                },
                starttls=False,
                cores=f"{procs.SERVER_CORE},{procs.GENERATOR_CORE}",
                timeout=3600,
            )
        finally:
            server.stop()
        self.provisioning = dict(result, total_seconds=round(time.perf_counter() - t0, 1))
        self.filled = server.data
        return self.filled

    def measure(self, peer: Any, gen: Generator, plan: Plan) -> dict[str, Any]:
        """One repetition: a fresh start from the filled archive, the pages measured."""
        filled = self.fill(peer, gen, plan)
        server = ArchiveServer(self.root / "measure", self.setup, filled)
        try:
            pid = server.start()
            result = gen.run(
                peer,
                pid,
                server.port,
                "mam",
                {
                    "messages": plan.mam_messages,
                    "page": plan.mam_page,
                    "min_queries": plan.mam_queries,
                    "warmup": plan.warmup,
                    "duration": plan.duration,
                },
                starttls=False,
                timeout=1800,
            )
        finally:
            server.stop()
        result["provisioning"] = self.provisioning
        return result
