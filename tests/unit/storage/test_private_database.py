"""The SQLite database holds credentials: created 0600 (its folder 0700) whatever
the umask, its -wal and -shm files too, and an existing readable one tightened.

Creation runs in a subprocess with ``os.umask(0)``: the umask is per process,
and 0 is the most permissive one (what is left to it comes out 0666 / 0777).
"""

from __future__ import annotations

import logging
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chatgate.storage.engine import create_engine


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_with_umask_0(code: str) -> None:
    script = "import asyncio, os\nos.umask(0)\n" + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_new_database_is_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "new" / "chatgate.db"
    run_with_umask_0(
        f"""
        from chatgate.auth.credentials import derive_all
        from chatgate.storage.database import Database

        async def main():
            db = await Database.open("sqlite+aiosqlite:///{path}")
            await db.accounts.create("alice", "localhost", derive_all("pw"))
            await db.close()

        asyncio.run(main())
        """
    )
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600


def test_wal_and_shm_files_take_the_database_mode(tmp_path: Path) -> None:
    path = tmp_path / "chatgate.db"
    script = f"""
        import sys
        from chatgate.auth.credentials import derive_all
        from chatgate.storage.database import Database

        async def main():
            db = await Database.open("sqlite+aiosqlite:///{path}")
            await db.accounts.create("alice", "localhost", derive_all("pw"))
            # Still open: the -wal and -shm files exist now.
            bad = [
                name
                for name in ("chatgate.db", "chatgate.db-wal", "chatgate.db-shm")
                if os.stat("{tmp_path}/" + name).st_mode & 0o077
            ]
            await db.close()
            sys.exit(f"readable by others: {{bad}}" if bad else 0)

        asyncio.run(main())
        """
    run_with_umask_0(script)


def test_an_existing_readable_database_is_tightened_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "chatgate.db"
    with sqlite3.connect(path) as conn:  # an install made before this fix: 0644
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        keep = sqlite3.connect(path)  # keeps -wal and -shm in place
    try:
        for name in ("chatgate.db", "chatgate.db-wal", "chatgate.db-shm"):
            (tmp_path / name).chmod(0o644)
        with caplog.at_level(logging.WARNING, logger="chatgate.datadir"):
            engine = create_engine(f"sqlite+aiosqlite:///{path}")
    finally:
        keep.close()
    for name in ("chatgate.db", "chatgate.db-wal", "chatgate.db-shm"):
        assert mode(tmp_path / name) == 0o600, name
    assert f"{path}: permissions tightened from 0644 to 0600" in caplog.text
    assert engine is not None


def test_a_private_database_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "chatgate.db"
    path.touch(0o600)
    path.chmod(0o600)
    with caplog.at_level(logging.DEBUG, logger="chatgate.datadir"):
        create_engine(f"sqlite+aiosqlite:///{path}")
    assert mode(path) == 0o600
    assert "tightened" not in caplog.text


def test_an_existing_folder_is_not_changed(tmp_path: Path) -> None:
    """The database's folder may be shared (a database in /srv/db, say): only a
    folder chatgate creates is made 0700."""
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    create_engine(f"sqlite+aiosqlite:///{folder / 'chatgate.db'}")
    assert mode(folder) == 0o755
    assert mode(folder / "chatgate.db") == 0o600
