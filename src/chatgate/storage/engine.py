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

PostgreSQL (asyncpg): a server out of reach must fail a login at once, not hang
it, and the pool must recover by itself when the server is back.  Connecting
gives up after `POSTGRES_CONNECT_TIMEOUT`, a statement after
`POSTGRES_COMMAND_TIMEOUT` (except a migration's: rewriting a large table may take
longer, and `migrate` uses an engine without that limit).  Failures to reach the
server are raised as `StorageUnavailable` (see `_on_error`), whatever the driver
calls them.

Stale connections: a connection idle for more than `POSTGRES_PING_AFTER_IDLE` is
pinged when taken from the pool (one round trip), and replaced if the server
closed it, so the first call after a quiet restart succeeds.  A connection in
steady use is not pinged: SQLAlchemy's ``pool_pre_ping`` would ping at every
checkout, on the path of every login and roster change (a primary-key read took
340-510 µs without it and 460-780 µs with it, on a busy 2-core machine).  The
cost of skipping the ping is one call: if the server restarted within that
second and no call noticed it while it was down, the first call on a dead
connection fails (`StorageUnavailable`) and SQLAlchemy then replaces every
pooled connection.

File modes: the database holds credentials, so a SQLite file is created here,
empty and 0600, before SQLite opens it (SQLite would create it 0644 whatever
the umask, and gives its -wal and -shm files the database's mode), its folder
0700 when missing; an existing file or journal readable by others is tightened
with a log line (see `chatgate.datadir`).  This covers the server and every CLI
command, whichever opens the database first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from chatgate.datadir import create_private_file, make_private_dir, tighten
from chatgate.storage.errors import StorageUnavailable

#: execution option read by the SQLite "begin" listener
BEGIN_MODE = "chatgate_sqlite_begin"

#: seconds a SQLite connection waits for the write lock before failing
SQLITE_BUSY_TIMEOUT = 30.0

#: seconds to open a PostgreSQL connection before giving up (a refused connection
#: fails at once; this bounds a server that does not answer at all)
POSTGRES_CONNECT_TIMEOUT = 5.0

#: seconds one PostgreSQL statement may run (or wait for a silent server)
POSTGRES_COMMAND_TIMEOUT = 30.0

#: seconds a pooled PostgreSQL connection may sit idle before it is pinged at checkout
POSTGRES_PING_AFTER_IDLE = 1.0

#: SQLSTATE classes and codes meaning "the server is out of reach": 08 connection
#: exception; 57P01-57P03 admin shutdown, crash shutdown, cannot connect now
_UNAVAILABLE_CLASSES = ("08",)
_UNAVAILABLE_CODES = ("57P01", "57P02", "57P03")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def is_postgresql(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


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


def create_engine(url: str, *, limit_statements: bool = True) -> AsyncEngine:
    """An async engine for `url`; for SQLite the file is made private first
    (`prepare_sqlite_file`), its folder created if missing; for PostgreSQL
    connections time out and are pinged at checkout after being idle, and a statement gives up
    after `POSTGRES_COMMAND_TIMEOUT` unless `limit_statements` is False (migrations)."""
    kwargs: dict[str, Any] = {}
    if is_postgresql(url) and make_url(url).get_driver_name() == "asyncpg":
        kwargs["connect_args"] = {
            "timeout": POSTGRES_CONNECT_TIMEOUT,
            "command_timeout": POSTGRES_COMMAND_TIMEOUT if limit_statements else None,
        }
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
    else:
        event.listen(engine.sync_engine, "do_connect", _connect)
        event.listen(engine.sync_engine, "handle_error", _on_error)
        event.listen(engine.sync_engine, "checkin", _checked_in)
        event.listen(engine.sync_engine, "checkout", _idle_pinger(engine.dialect))
    return engine


def _checked_in(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info[_IDLE_SINCE] = time.monotonic()


def _idle_pinger(dialect: Dialect) -> Callable[[Any, Any, Any], None]:
    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        """Ping a connection idle for more than `POSTGRES_PING_AFTER_IDLE`; one the
        server closed is replaced (the pool retries on DisconnectionError)."""
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since <= POSTGRES_PING_AFTER_IDLE:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"stale pooled connection: {exc!r}") from exc

    return ping_if_idle


#: `ConnectionPoolEntry.info` key: when the connection went back to the pool
_IDLE_SINCE = "chatgate_idle_since"


def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    """Open a DBAPI connection as the dialect would, raising `StorageUnavailable`
    when the server refuses, does not answer or is shutting down (SQLAlchemy's
    error hook never sees the driver's OSError and TimeoutError at connect)."""
    try:
        return dialect.loaded_dbapi.connect(*cargs, **cparams)
    except Exception as exc:
        if _unreachable(exc):
            raise StorageUnavailable(f"the database is unreachable: {exc!r}") from exc
        raise


def _on_error(context: ExceptionContext) -> None:
    """Raise `StorageUnavailable` in place of a failure to reach the server
    (SQLAlchemy has already invalidated the broken connection, and with a
    disconnect the rest of the pool).  A cancellation stays a cancellation."""
    if not isinstance(context.original_exception, Exception):
        return
    if context.is_disconnect or _unreachable(context.original_exception):
        raise StorageUnavailable(
            f"the database is unreachable: {context.original_exception!r}"
        ) from context.original_exception


def _unreachable(error: BaseException | None) -> bool:
    """Whether `error`, or an exception it was raised from, says the server is
    out of reach: refused, reset, timed out, shutting down."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, (OSError, TimeoutError)):
            return True
        code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(code, str) and (
            code.startswith(_UNAVAILABLE_CLASSES) or code in _UNAVAILABLE_CODES
        ):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


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
