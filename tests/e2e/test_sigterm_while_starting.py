"""SIGTERM while `chatgate serve` is still starting: it stops gracefully (exit 0)
once it has started, not killed half-way by the signal's default action."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from .conftest import free_ports, launch


def test_a_sigterm_during_the_start_stops_the_server_gracefully(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    config = tmp_path / "chatgate.toml"
    config.write_text(
        f"""
[server]
domain = "localhost"
data_dir = "{tmp_path / "var"}"
log_level = "info"

[[listeners]]
port = {port}
tls = "none"
require_tls = false

[http]
enabled = false
"""
    )
    log = tmp_path / "server.log"
    process = launch(config, log)
    try:
        deadline = time.monotonic() + 30
        # logged by `Server.start` before its listeners open: the start is under way
        while "credential cache:" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text(errors="replace")
    assert "listening:" in text and "stopping" in text
