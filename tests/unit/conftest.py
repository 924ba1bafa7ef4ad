"""Fixtures every unit test package may use: a fresh database per test (`db`), at
the URL `db_url` names, so a test can open it a second time as another process would.

The backend is SQLite (a file in the test's folder) everywhere.  The tests under
`POSTGRESQL_FOLDERS` run a second time on PostgreSQL (parameter id `postgresql`,
marker `postgresql`; `-m "not postgresql"` leaves them out).  Marked `sqlite_only`,
a test about SQLite itself stays on SQLite; marked `postgresql_only`, a test in any
folder runs on PostgreSQL alone.

PostgreSQL: one throwaway cluster for the session (`tests/postgres_server.py`)
with one database migrated once, emptied before each test (~20 ms; a new database
per test copies ~7 MB of catalogs, 150-400 ms on a busy machine, and a migration
costs more).  A test that needs a database without tables (migration tests) asks
for `empty_db_url`, a new database of its own.  `postgres` (the session fixture)
gives the cluster itself, for tests that need more databases.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chatgate.storage.database import Database
from chatgate.storage.migrate import migrate
from tests.postgres_server import PostgresServer, postgres_available, start_postgres

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

#: folders under tests/unit whose `db`/`db_url` tests also run on PostgreSQL
POSTGRESQL_FOLDERS = ("storage", "accounts", "http", "streams")

#: the database at the newest schema the `postgresql` tests share, emptied for each
SHARED = "chatgate_tests"

_numbers = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "postgresql: runs on a throwaway PostgreSQL cluster (tests/postgres_server.py)"
    )
    config.addinivalue_line(
        "markers", "sqlite_only: about SQLite itself (files, pragmas): not run on PostgreSQL"
    )
    config.addinivalue_line(
        "markers", "postgresql_only: about PostgreSQL itself: run on PostgreSQL alone"
    )


def _on_postgresql(path: Path) -> bool:
    parts = path.relative_to(Path(__file__).parent).parts
    return bool(parts) and parts[0] in POSTGRESQL_FOLDERS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" not in metafunc.fixturenames:
        return
    on_postgresql = pytest.param(POSTGRESQL, marks=pytest.mark.postgresql)
    if metafunc.definition.get_closest_marker("postgresql_only") is not None:
        metafunc.parametrize("db_backend", [on_postgresql], indirect=True)  # in any folder
    elif _on_postgresql(metafunc.definition.path) and (
        metafunc.definition.get_closest_marker("sqlite_only") is None
    ):
        metafunc.parametrize("db_backend", [SQLITE, on_postgresql], indirect=True)


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """`sqlite`, or `postgresql` for the tests `pytest_generate_tests` doubles."""
    return str(getattr(request, "param", SQLITE))


@dataclass
class PostgresForTests:
    """The session's cluster and its one database at the newest schema, `shared`,
    which every `postgresql` test gets emptied (`empty_db_url` makes a new one)."""

    server: PostgresServer
    shared: str
    emptying: str

    def emptied(self) -> str:
        """`shared`'s URL, every table emptied and every sequence restarted at 1
        (foreign-key triggers off while deleting, so the order does not matter)."""
        self.server.sql(self.emptying, SHARED)
        return self.shared


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresForTests]:
    """A throwaway PostgreSQL cluster for the session, with `SHARED` migrated once."""
    if not postgres_available():
        pytest.skip("PostgreSQL is not installed (tests/install-system-deps.sh installs it)")
    server = start_postgres()
    try:
        url = server.create_database(SHARED)
        _in_own_loop(migrate(url))
        tables = server.sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'alembic_version'",
            SHARED,
        ).split()
        emptying = "; ".join(
            [
                "BEGIN",
                "SET LOCAL lock_timeout = '10s'",
                "SET LOCAL session_replication_role = replica",
                *(f'DELETE FROM "{table}"' for table in tables),
                "SELECT count(setval(oid, 1, false)) FROM pg_class WHERE relkind = 'S'",
                "COMMIT",
            ]
        )
        yield PostgresForTests(server, url, emptying)
    finally:
        server.close()


def _in_own_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Run `coro` to completion on a new event loop in a thread of its own (a
    test's loop may be running in this one)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


@pytest.fixture
def db_url(tmp_path: Path, db_backend: str, request: pytest.FixtureRequest) -> str:
    """A new database, at the newest schema on PostgreSQL, not yet created on SQLite
    (`Database.open` creates it): either way `Database.open(db_url)` gives an empty one."""
    if db_backend == POSTGRESQL:
        postgres: PostgresForTests = request.getfixturevalue("postgres")
        return postgres.emptied()
    return f"sqlite+aiosqlite:///{tmp_path / 'var' / 'chatgate.db'}"


@pytest.fixture
def empty_db_url(tmp_path: Path, db_backend: str, request: pytest.FixtureRequest) -> str:
    """A new database without any table (for migration tests)."""
    if db_backend == POSTGRESQL:
        server = request.getfixturevalue("postgres").server
        name = f"empty{next(_numbers)}"
        request.addfinalizer(lambda: server.drop_database(name))
        return str(server.create_database(name))
    return f"sqlite+aiosqlite:///{tmp_path / 'empty' / 'chatgate.db'}"


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await Database.open(db_url)
    try:
        yield database
    finally:
        await database.close()
