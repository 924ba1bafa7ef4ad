"""Installation secrets: named random keys made once and shared by every server process.

Some answers must be the same from every process and across restarts, or they
can be compared: the salt SCRAM invents for a username without an account, the
zero-knowledge chain XEP-0078 invents for one.  Each is derived from a secret
of the whole installation, which lives here (table ``installation_secrets``,
migration 0004), not in the memory of one process or in a file of one data
directory.

`SecretStore` is the interface; `get_or_create` is atomic, so processes that
start together agree on one value: each proposes a fresh random value with
``INSERT ... ON CONFLICT DO NOTHING``, and all then read back the one that was
stored first.  `SqlSecretStore` is the database's; `MemorySecretStore` is for
tests and for code that has no database.

Values are never logged.  Nothing here chooses names or sizes: the callers do.
"""

from __future__ import annotations

import re
from typing import Protocol

from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert

from chatgate.storage.engine import writer
from chatgate.storage.models import InstallationSecret, utcnow

__all__ = ["MemorySecretStore", "SecretStore", "SqlSecretStore"]

#: Secret names: short, lowercase, readable in a database dump ("sasl-unknown-user").
_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")


class SecretStore(Protocol):
    """Named installation secrets, made once, the same for every process."""

    async def get_or_create(self, name: str, candidate: bytes) -> bytes:
        """The secret called `name`; when there is none yet, `candidate` becomes it.

        Atomic: of processes calling at the same time with different candidates,
        all get the same value back (the one stored first).  Raises ValueError for
        an invalid name or an empty candidate.
        """
        ...


def _check(name: str, candidate: bytes) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid secret name {name!r}")
    if not candidate:
        raise ValueError("an installation secret cannot be empty")


class MemorySecretStore:
    """`SecretStore` in this process's memory (tests, tools without a database)."""

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}

    async def get_or_create(self, name: str, candidate: bytes) -> bytes:
        _check(name, candidate)
        return self._values.setdefault(name, bytes(candidate))


class SqlSecretStore:
    """`SecretStore` over the ``installation_secrets`` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._writer = writer(engine)

    async def get_or_create(self, name: str, candidate: bytes) -> bytes:
        _check(name, candidate)
        values = {"name": name, "value": bytes(candidate), "created": utcnow()}
        try:
            return await self._insert_then_read(name, values)
        except IntegrityError:
            # Only on backends without ON CONFLICT: another process stored it
            # between our look and our insert; theirs is the value.
            return await self._insert_then_read(name, None)

    async def _insert_then_read(self, name: str, values: dict[str, object] | None) -> bytes:
        query = select(InstallationSecret.value).where(InstallationSecret.name == name)
        async with self._writer.begin() as conn:
            if values is not None:
                statement = _insert_if_absent(conn.dialect.name, values)
                if statement is not None:
                    await conn.execute(statement)
                elif (await conn.execute(query)).scalar_one_or_none() is None:
                    await conn.execute(insert(InstallationSecret).values(**values))
            # SQLite: BEGIN IMMEDIATE holds the write lock, so this reads what the
            # insert left.  PostgreSQL (READ COMMITTED): a concurrent insert of the
            # same name made ours wait for its commit, which this statement sees.
            return bytes((await conn.execute(query)).scalar_one())


def _insert_if_absent(dialect: str, values: dict[str, object]) -> Insert | None:
    """``INSERT ... ON CONFLICT DO NOTHING`` where the backend has it, else None."""
    if dialect == "sqlite":
        return sqlite.insert(InstallationSecret).values(**values).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql.insert(InstallationSecret).values(**values).on_conflict_do_nothing()
    return None
