"""Without `[cluster] enabled` nothing of the cluster layer is imported (the claim
of `chatgate/cluster/__init__.py`): a one-process server neither pays for nor
depends on Redis's client, and a feature that spans nodes picks its cluster
implementation lazily, in its module's setup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: run in a fresh interpreter: this test process has imported the cluster already
SCRIPT = """
import asyncio, sys
from pathlib import Path
from chatgate.config import load_config
from chatgate.server import Server

async def main():
    server = Server(load_config(Path(sys.argv[1])))
    await server.start()  # every module set up, as `chatgate serve` does
    await server.stop()

asyncio.run(main())
print(sorted(m for m in sys.modules if m.startswith(("chatgate.cluster.", "redis"))))
"""


def test_a_server_started_without_a_cluster_imports_no_cluster_code(tmp_path: Path) -> None:
    config = tmp_path / "chatgate.toml"
    config.write_text(
        "[server]\ndomain = 'localhost'\n"
        f"[storage]\nurl = 'sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}'\n"
        "[[listeners]]\nport = 0\ntls = 'none'\n[http]\nenabled = false\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # The options model is read with the configuration; nothing else.
    assert out.strip().splitlines()[-1] == "['chatgate.cluster.options']", out
