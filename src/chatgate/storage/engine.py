"""Creating the async engine: SQLite connection settings and transaction begin modes.

SQLite (the embedded default) needs three things on every connection:
``PRAGMA foreign_keys=ON`` (otherwise ON DELETE CASCADE is silently ignored),
WAL journaling so the `chatgate user` CLI and the server can share the file
(readers never block the writer), and ``synchronous=NORMAL`` (durable at each
WAL checkpoint; a power cut may lose the last commits but never corrupts).

Transactions: the sqlite3 driver normally delays BEGIN until the first write,
so a read followed by a write is not atomic.  We take over BEGIN (the recipe
from the SQLAlchemy SQLite dialect documentation) and let each engine choose
the mode: `reader` emits a deferred ``BEGIN``, `writer` emits
``BEGIN IMMEDIATE``, which takes the database's single write lock up front, so
a write transaction's checks and its writes see the same state even across
processes.  PostgreSQL ignores the option; its repositories lock the account
row instead (``SELECT ... FOR UPDATE``).

File modes: the database holds credentials, so a SQLite file is created here,
empty and 0600, before SQLite opens it (SQLite would create it 0644 whatever
the umask, and gives its -wal and -shm files the database's mode), its folder
0700 when missing; an existing file or journal readable by others is tightened
with a log line (see `chatgate.datadir`).  This covers the server and every CLI
command, whichever opens the database first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from chatgate.datadir import create_private_file, make_private_dir, tighten

#: execution option read by the SQLite "begin" listener
BEGIN_MODE = "chatgate_sqlite_begin"

#: seconds a SQLite connection waits for the write lock before failing
SQLITE_BUSY_TIMEOUT = 30.0


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for memory databases and other backends."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


#: Files SQLite keeps beside a database, given the mode of the database itself.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def prepare_sqlite_file(path: Path) -> None:
    """Make the database file `path` private before SQLite opens it: its folder
    0700 when missing, the file itself created empty and 0600, and an existing
    file or companion readable by others tightened (logged)."""
    make_private_dir(path.parent)
    create_private_file(path)
    for candidate in (path, *(path.with_name(path.name + s) for s in SQLITE_COMPANIONS)):
        tighten(candidate)


def _is_memory(url: str) -> bool:
    return is_sqlite(url) and sqlite_path(url) is None


def create_engine(url: str) -> AsyncEngine:
    """An async engine for `url`; for SQLite the file is made private first
    (`prepare_sqlite_file`), its folder created if missing."""
    kwargs: dict[str, Any] = {}
    if is_sqlite(url):
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT}
        path = sqlite_path(url)
        if path is not None:
            prepare_sqlite_file(path)
        elif _is_memory(url):
            # One connection, or every connection would see its own empty database.
            kwargs["poolclass"] = StaticPool
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        _configure_sqlite(engine)
    return engine


def writer(engine: AsyncEngine) -> AsyncEngine:
    """A view of `engine` (same pool) whose transactions take the write lock at BEGIN."""
    return engine.execution_options(**{BEGIN_MODE: "IMMEDIATE"})


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" listener below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(BEGIN_MODE, "")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")
