"""XEP-0114 components with `chatgate serve --workers 2`: both workers share the
component port as they share the c2s port, and whichever worker a component and a
client land on, they reach each other."""

from __future__ import annotations

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
import slixmpp

from tests.e2e.cluster_harness import import_users, migrate, shared_database
from tests.e2e.conftest import RunningServer, free_ports, logged_in
from tests.e2e.test_components import DOMAIN, SECRET, Raw, component
from tests.redis_server import start_redis

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARGV = [sys.executable, "-m", "chatgate", "serve", "--workers", "2"]
USERS = {f"user{i}": f"user{i}-secret-1" for i in range(4)}


def wait_for(log: Path, pattern: str, count: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if len(re.findall(pattern, text)) >= count:
            return
        assert process.poll() is None, text
        time.sleep(0.05)
    raise AssertionError(log.read_text(errors="replace")[-4000:])


@pytest.fixture(scope="module")
def workers() -> Iterator[tuple[RunningServer, int]]:
    folder = Path(tempfile.mkdtemp(prefix="chatgate-components-workers-"))
    redis = start_redis()
    storage_url, postgres = shared_database(folder)
    port, component_port = free_ports(2)
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
enabled = false

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

[component_listener]
port = {component_port}

[[components]]
domain = "{DOMAIN}"
secret = "{SECRET}"
"""
    )
    process = None
    try:
        migrate(storage_url)
        import_users(config, USERS)
        log = folder / "server.log"
        with log.open("wb") as fh:
            process = subprocess.Popen(
                [*ARGV, "--config", str(config)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wait_for(log, r"listening: components on", 2, process)
        yield RunningServer(process, config, folder / "var", 0, 0, port, log), component_port
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        redis.stop()
        if postgres is not None:
            postgres.close()  # type: ignore[attr-defined]
        shutil.rmtree(folder, ignore_errors=True)


async def test_clients_on_either_worker_reach_the_component(
    workers: tuple[RunningServer, int],
) -> None:
    server, port = workers
    async with component(port):
        for name, password in USERS.items():  # spread over both workers by the kernel
            async with logged_in(
                server, f"{name}@localhost", password, transport="plain", send_presence=False
            ) as client:
                await client.plugin["xep_0199"].ping(slixmpp.JID(DOMAIN), timeout=5)
        # Whichever worker a second connection lands on, the domain is taken.
        for _ in range(3):
            second = Raw(port)
            second.handshake(second.open(DOMAIN), SECRET)
            second.expect(rb"<conflict")
            second.close()
