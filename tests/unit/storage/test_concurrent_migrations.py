"""Several processes starting together on one new database (a cluster's nodes,
`serve --workers N`, the server beside a CLI command): the migrations run once,
every process starts, and the schema is at the newest revision once.

Real processes, not tasks: each has its own interpreter, engine and connections.
They import everything first, then wait for one "go" file, so their upgrades
begin within milliseconds of each other.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import inspect, text

from chatgate.storage.engine import create_engine
from chatgate.storage.migrate import head_revision

from .test_migrations import TABLES

PROCESSES = 4

SCRIPT = """
import asyncio, sys, time
from pathlib import Path
from chatgate.storage.migrate import migrate
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.002)
asyncio.run(migrate(url))
"""


async def _schema(url: str) -> tuple[set[str], list[str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    finally:
        await engine.dispose()
    return tables, [v for (v,) in versions]


async def test_processes_migrating_together_all_start_and_migrate_once(
    empty_db_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    readies = [tmp_path / f"ready-{n}" for n in range(PROCESSES)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, empty_db_url, str(ready), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for ready in readies
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in readies):
            assert time.monotonic() < deadline, "the migrating processes did not get ready"
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            await asyncio.sleep(0.02)
        go.touch()
        outcomes = [await asyncio.to_thread(p.communicate, timeout=60) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    failures = [
        err.decode(errors="replace")[-1500:]
        for p, (_, err) in zip(processes, outcomes, strict=True)
        if p.returncode != 0
    ]
    assert failures == []
    tables, versions = await _schema(empty_db_url)
    assert tables == TABLES | {"alembic_version"}
    assert versions == [head_revision()]
