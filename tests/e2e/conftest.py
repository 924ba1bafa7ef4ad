"""End-to-end fixtures: the real `chatgate serve` in a subprocess, and slixmpp clients.

The server runs exactly as an operator runs it (the CLI, a TOML file, SQLite
under a temporary data dir), on free loopback ports.  Users are created with
`chatgate user add --password-stdin`.  Clients are slixmpp, an independent
implementation, trusting the server's generated self-signed certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import slixmpp

from tests.ports import free_port, free_ports

pytestmark = pytest.mark.e2e

__all__ = ["free_port", "free_ports"]  # imported from here by e2e tests


#: every server started in this test session (see `_stop_leftovers`)
_STARTED: list[RunningServer] = []


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    config: Path
    data_dir: Path
    starttls_port: int
    direct_tls_port: int
    plain_port: int
    log: Path
    #: extra environment for the server and for `cli()` (e.g. PYTHONPATH for plugins)
    env: Mapping[str, str] | None = None
    #: the HTTP listener's plain and HTTPS ports (0: none)
    http_port: int = 0
    https_port: int = 0

    def __post_init__(self) -> None:
        _STARTED.append(self)

    @property
    def certificate(self) -> Path:
        return self.data_dir / "certs" / "localhost.crt"

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chatgate", *args, "--config", str(self.config)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **(self.env or {})},
        )

    def add_user(self, name: str, password: str) -> None:
        result = self.cli("user", "add", name, "--password-stdin", stdin=password + "\n")
        assert result.returncode == 0, result.stderr

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return self.process.returncode


@pytest.fixture(scope="session", autouse=True)
def _stop_leftovers() -> Iterator[None]:
    """Stop, at the end of the session, any server a fixture or test left running:
    one whose set-up failed after the start (a refused `add_user`, say) never
    reaches its own `stop()`, and must not outlive the test run."""
    yield
    for server in _STARTED:
        if server.process.poll() is None:
            with contextlib.suppress(Exception):
                server.stop()


def start_server(
    tmp: Path,
    extra: str = "",
    *,
    env: Mapping[str, str] | None = None,
    listeners: int = 3,
) -> RunningServer:
    starttls, direct, plain = free_ports(3)
    # `extra` goes under [auth]; it may set its own mechanisms, and tables after
    # them (`listeners`: how many "listening:" lines the start logs then).  `env`
    # is added to the server's environment (and to `RunningServer.cli`'s).
    mechanisms = (
        ""
        if extra.lstrip().startswith("mechanisms")
        else 'mechanisms = ["SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]\n'
    )
    data_dir = tmp / "var"
    config = tmp / "chatgate.toml"
    config.write_text(
        f"""
[server]
domain = "localhost"
data_dir = "{data_dir}"
log_level = "info"

[[listeners]]
port = {starttls}
tls = "starttls"

[[listeners]]
port = {direct}
tls = "direct"

[[listeners]]
port = {plain}
tls = "none"
require_tls = false

[http]
enabled = false

[auth]
{mechanisms}{extra}
"""
    )
    return serve(config, data_dir, (starttls, direct, plain), env=env, listeners=listeners)


def launch(
    config: Path, log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`chatgate serve --config CONFIG` as an operator runs it, its output to `log`;
    not waited for (`serve` waits until it listens)."""
    with log.open("wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "chatgate", "serve", "--config", str(config)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        )


def serve(
    config: Path,
    data_dir: Path,
    ports: tuple[int, int, int],
    *,
    env: Mapping[str, str] | None = None,
    listeners: int = 3,
) -> RunningServer:
    """Run `chatgate serve --config CONFIG` as an operator does and wait until its
    `listeners` listeners are up; `ports` are its (STARTTLS, direct TLS, plain)
    ports, 0 for one it does not have.  Its output goes to server.log beside it."""
    log = config.parent / "server.log"
    process = launch(config, log, env)
    server = RunningServer(process, config, data_dir, *ports, log, env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log_text()}")
        if server.log_text().count("listening:") >= listeners:
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not start:\n{server.log_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_server(tmp_path_factory.mktemp("chatgate"))
    yield srv
    code = srv.stop()
    assert code == 0, f"server exit code {code}:\n{srv.log_text()}"
    assert "Traceback" not in srv.log_text(), srv.log_text()


class Client(slixmpp.ClientXMPP):
    """A slixmpp client that records what it receives, for assertions."""

    def __init__(self, jid: str, password: str, *, mechanism: str | None = None) -> None:
        super().__init__(jid, password)
        self.messages: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        self.presences: asyncio.Queue[slixmpp.Presence] = asyncio.Queue()
        self.stream_errors: asyncio.Queue[object] = asyncio.Queue()
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0203")
        if mechanism is not None:
            self.plugin["feature_mechanisms"].use_mech = mechanism
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("presence", self.presences.put_nowait)
        self.add_event_handler("stream_error", self.stream_errors.put_nowait)

    async def next_message(self, timeout: float = 10) -> slixmpp.Message:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_presence(
        self, ptype: str | None = None, timeout: float = 10, *, sender: str | None = None
    ) -> slixmpp.Presence:
        async def wait() -> slixmpp.Presence:
            while True:
                p = await self.presences.get()
                if (ptype is None or p["type"] == ptype) and (
                    sender is None or p["from"] == sender
                ):
                    return p

        return await asyncio.wait_for(wait(), timeout)


async def connect(
    server: RunningServer,
    jid: str,
    password: str,
    *,
    transport: str = "starttls",
    mechanism: str | None = None,
    send_presence: bool = True,
    timeout: float = 15,
) -> Client:
    """Connect and log in; raises AuthenticationFailed with the SASL condition on failure."""
    client = Client(jid, password, mechanism=mechanism)
    client.ca_certs = server.certificate
    client.enable_plaintext = transport == "plain"
    client.enable_starttls = transport == "starttls"
    client.enable_direct_tls = transport == "direct"
    if transport == "plain":
        client.plugin["feature_mechanisms"].unencrypted_plain = True
    port = {
        "starttls": server.starttls_port,
        "direct": server.direct_tls_port,
        "plain": server.plain_port,
    }[transport]
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[str] = loop.create_future()

    def done(value: str) -> None:
        if not outcome.done():
            outcome.set_result(value)

    client.add_event_handler("session_start", lambda _e: done("ok"))
    client.add_event_handler("failed_all_auth", lambda _e: done("failed"))
    client.add_event_handler("failed_auth", lambda e: setattr(client, "auth_failure", e))
    client.add_event_handler("disconnected", lambda _e: done("disconnected"))
    client.connect("127.0.0.1", port)
    result = await asyncio.wait_for(outcome, timeout)
    if result != "ok":
        failure = getattr(client, "auth_failure", None)
        condition = failure["condition"] if failure is not None else result
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise AuthenticationFailed(str(condition))
    if send_presence:
        # What an IM client does at session start: fetch the roster (which also
        # subscribes this resource to roster pushes), then send initial presence.
        await client.get_roster()
        client.send_presence()
    return client


class AuthenticationFailed(Exception):
    def __init__(self, condition: str) -> None:
        super().__init__(condition)
        self.condition = condition


@contextlib.asynccontextmanager
async def logged_in(server: RunningServer, jid: str, password: str, **kw) -> AsyncIterator[Client]:  # type: ignore[no-untyped-def]
    client = await connect(server, jid, password, **kw)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)


@contextlib.asynccontextmanager
async def present(client: Client, *, caps: bool = False) -> AsyncIterator[Client]:
    """What an IM client does once logged in: fetch the roster (which subscribes the
    resource to roster pushes), with `caps` compute its XEP-0115 caps (the plugin
    registered), send initial presence; disconnected when the block ends."""
    try:
        await client.get_roster()
        if caps:
            await client.plugin["xep_0115"].update_caps(broadcast=False)
        client.send_presence()
        yield client
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5)
