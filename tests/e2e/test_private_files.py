"""Credentials at rest: the data directory is 0700 and every file in it 0600,
whatever the umask of the process that creates them (`serve` or the CLI).

The server and the CLI run in subprocesses with ``umask 0`` (`Popen(umask=0)`),
the most permissive setting: anything left to the umask would come out 0666
or 0777.  SQLite itself creates a new database 0644 whatever the umask, and its
-wal and -shm files with the database's mode.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import free_port

pytestmark = pytest.mark.e2e

HEADER = (
    b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' "
    b"xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


def modes(data_dir: Path) -> dict[str, str]:
    """Every path under `data_dir` (itself included) with its permission bits."""
    found = {".": oct(stat.S_IMODE(data_dir.stat().st_mode))}
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            path = Path(root, name)
            found[str(path.relative_to(data_dir))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def private(found: dict[str, str], data_dir: Path) -> dict[str, str]:
    """What `found` should be: directories 0700, files 0600."""
    return {name: oct(0o700 if (data_dir / name).is_dir() else 0o600) for name in found}


def write_config(tmp: Path) -> tuple[Path, int]:
    config, plain_port = tmp / "chatgate.toml", free_port()
    config.write_text(
        f"""
[server]
domain = "localhost"
data_dir = "{tmp / "var"}"

[[listeners]]
port = {free_port()}
tls = "starttls"

[[listeners]]
port = {plain_port}
tls = "none"
require_tls = false

[http]
enabled = false

[modules.legacy_auth]
digest = true
"""
    )
    return config, plain_port


def cli(config: Path, *args: str, stdin: str | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chatgate", *args, "--config", str(config)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        umask=0,
    )
    assert done.returncode == 0, done.stderr


def serve(config: Path, plain_port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start `chatgate serve` with umask 0; return once it answers a stream header
    (so its SIGTERM handler is installed)."""
    with log.open("wb") as fh:
        process = subprocess.Popen(
            [sys.executable, "-m", "chatgate", "serve", "--config", str(config)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            umask=0,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{text}")
        if text.count("listening:") >= 2:
            with socket.create_connection(("127.0.0.1", plain_port), timeout=10) as sock:
                sock.sendall(HEADER)
                answer = b""
                while b"</stream:features>" not in answer:
                    chunk = sock.recv(65536)
                    assert chunk, answer
                    answer += chunk
            return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    assert process.wait(timeout=20) == 0


def test_serve_with_umask_0_keeps_everything_private(tmp_path: Path) -> None:
    (config, port), data_dir = write_config(tmp_path), tmp_path / "var"
    process = serve(config, port, tmp_path / "server.log")
    try:
        cli(config, "user", "add", "alice", "--password-stdin", stdin="correct horse\n")
        found = modes(data_dir)
        assert {"chatgate.db", "chatgate.db-wal", "chatgate.db-shm"} <= found.keys()
        assert {"certs", "certs/localhost.key", "certs/localhost.crt"} <= found.keys()
        assert "credentials.stamp" in found
        assert found == private(found, data_dir)
    finally:
        stop(process)


def test_cli_first_with_umask_0_keeps_everything_private(tmp_path: Path) -> None:
    (config, port), data_dir = write_config(tmp_path), tmp_path / "var"
    cli(config, "check")
    cli(config, "user", "add", "alice", "--password-stdin", stdin="correct horse\n")
    found = modes(data_dir)
    assert {"chatgate.db", "credentials.stamp"} <= found.keys()
    assert found == private(found, data_dir)
    process = serve(config, port, tmp_path / "server.log")
    try:
        found = modes(data_dir)
        assert found == private(found, data_dir)
    finally:
        stop(process)


def test_existing_loose_database_is_tightened_at_start(tmp_path: Path) -> None:
    (config, port), data_dir = write_config(tmp_path), tmp_path / "var"
    cli(config, "user", "add", "alice", "--password-stdin", stdin="correct horse\n")
    # An install made before this fix: 0755 directory, 0644 database.
    data_dir.chmod(0o755)
    for name in ("chatgate.db", "credentials.stamp"):
        (data_dir / name).chmod(0o644)
    log = tmp_path / "server.log"
    process = serve(config, port, log)
    try:
        found = modes(data_dir)
        assert found == private(found, data_dir)
        text = log.read_text()
        assert f"{data_dir / 'chatgate.db'}: permissions tightened from 0644 to 0600" in text
    finally:
        stop(process)
