"""The servers under test, each behind the same small lifecycle.

A peer writes a private configuration into a work directory it is given (`prepare`), creates the
benchmark accounts there the fastest honest way, then can be started fresh any number of times
(`start` returns the PID to measure) and stopped (`stop`). `describe` returns what the results
JSON records about it: version, exact configuration text and the tuning applied.

Peers are listed explicitly in `builtin_peers`; nothing registers itself on import.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench import procs
from bench.certs import CertPaths


@dataclass(frozen=True, slots=True)
class PeerOptions:
    """Per-run choices a peer may need: every peer is built as `Peer(options)`."""

    fanout_contacts: int = 0
    prosody_gc: str = "generational"
    #: serve the stream authority's hooks (the authority scenario; chatgate only)
    stream_hooks: bool = False
    #: chatgate with its default features (archive, carbons, blocking, ...) instead of
    #: the peers' feature set: what those features cost (`--chatgate-features`)
    default_features: bool = False


@dataclass(frozen=True, slots=True)
class PeerSetup:
    """What every peer is prepared with."""

    workdir: Path
    users: int
    port: int
    cert: CertPaths
    #: plain-HTTP port for BOSH and WebSocket (0: the peer serves no web transports)
    http_port: int = 0


@dataclass(frozen=True, slots=True)
class WebPaths:
    """Where a peer serves XMPP over HTTP, on `PeerSetup.http_port` (plain HTTP, loopback)."""

    bosh: str
    websocket: str


class Peer(Protocol):
    name: str
    # True when the harness wrote the SCRAM salts itself (the generator's cache already has them).
    salts_known: bool
    # The URL paths of its BOSH and WebSocket endpoints on the HTTP port.
    web: WebPaths

    def available(self) -> str | None:
        """None when installed and runnable, otherwise why not."""

    def version(self) -> str: ...

    def prepare(self, setup: PeerSetup) -> bool:
        """Write config and accounts; True if rosters are already provisioned (cached)."""

    def provisioned(self) -> None:
        """Called once the harness provisioned rosters on a started server (cache hook)."""

    def start(self) -> int:
        """Start a fresh server process, wait until it serves, return the PID to measure."""

    def stop(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class RunningProcess:
    """The one process a peer has started, stopped only by its PID."""

    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    def start(
        self,
        argv: list[str],
        port: int,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 60.0,
    ) -> int:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("already running")
        self.proc = procs.start_pinned(
            argv, core=procs.SERVER_CORE, log_path=self.log, env=env, cwd=cwd
        )
        self.starts += 1
        try:
            procs.wait_for_port(port, self.proc, timeout, self.log)
        except BaseException:
            self.stop()
            raise
        return self.proc.pid

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None:
            procs.stop(self.proc, timeout)
            self.proc = None


def builtin_peers() -> dict[str, type]:
    """Every server the harness knows, by the name used on the command line."""
    from bench.peers.chatgate import ChatgatePeer
    from bench.peers.ejabberd import EjabberdPeer
    from bench.peers.prosody import ProsodyPeer

    return {"chatgate": ChatgatePeer, "prosody": ProsodyPeer, "ejabberd": EjabberdPeer}
