"""The README's quick start, run as a newcomer runs it (issue 10, "done when"):
`make run` writes a configuration and serves it, the two `user add` commands make
accounts, and both log in with an independent client.  The commands are read from
README.md (tests/docblocks.py), never copied; only `.venv/bin/` is replaced by this
environment's scripts folder, and the server's ports by free ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docblocks import ROOT, commands, shell_block
from tests.e2e.conftest import RunningServer, connect, start_server

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def test_make_run_writes_a_configuration_then_serves_it() -> None:
    """`make run` (the README's first block) runs `chatgate init`, then `serve`, on
    the configuration it wrote: checked on the recipe make would run."""
    (command,) = commands(shell_block("README.md", "quick-start"))
    target = command.split("#")[0].split()
    assert target == ["make", "run"]
    recipe = subprocess.run(
        [*target, "-n", "-C", str(ROOT)], capture_output=True, text=True, check=True
    ).stdout
    init = recipe.index("chatgate init --config chatgate.toml")
    serve = recipe.index("chatgate serve --config chatgate.toml")
    assert init < serve


def test_the_make_targets_the_readme_names_exist() -> None:
    for command in commands(shell_block("README.md", "make-targets")):
        target = command.split("#")[0].split()
        assert target[0] == "make"
        done = subprocess.run(["make", "-n", "-C", str(ROOT), *target[1:]], capture_output=True)
        assert done.returncode == 0, done.stderr


async def test_the_quick_start_users_log_in(tmp_path: Path) -> None:
    # A running server on free ports (the test harness's configuration, not init's).
    server: RunningServer = start_server(tmp_path)
    try:
        script = "\n".join(commands(shell_block("README.md", "quick-start-users")))
        script = script.replace(
            ".venv/bin/chatgate", f"{BIN / 'chatgate'} --config {server.config}"
        )
        # `user add alice` asks for the password twice: a newcomer types it.
        done = subprocess.run(
            ["bash", "-e", "-c", script],
            input="alice's password\nalice's password\n",
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **(server.env or {})},
        )
        assert done.returncode == 0, done.stderr
        alice = await connect(server, "alice@localhost", "alice's password")
        bob = await connect(server, "bob@localhost", "correct horse")
        for client in (alice, bob):
            await client.disconnect()
    finally:
        assert server.stop() == 0


def test_the_quick_start_administrator_reads_the_api(tmp_path: Path) -> None:
    """The README's admin block: an administrator made on the command line reads
    `/api/v1/stats` with curl at once (the server's HTTP port put in for 5280)."""
    from tests.e2e.web import start_web_server

    server = start_web_server(tmp_path)
    try:
        script = "\n".join(commands(shell_block("README.md", "quick-start-admin")))
        script = script.replace(
            ".venv/bin/chatgate", f"{BIN / 'chatgate'} --config {server.config}"
        ).replace("127.0.0.1:5280", f"127.0.0.1:{server.http_port}")
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **(server.env or {})},
        )
        assert done.returncode == 0, done.stderr
        # `admin user add` says what it did; curl's answer is the last line
        stats = json.loads(done.stdout.strip().splitlines()[-1])
        assert "connections" in stats, stats
    finally:
        assert server.stop() == 0
