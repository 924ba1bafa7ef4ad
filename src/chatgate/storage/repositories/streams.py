"""The stream authority's tables (migration 0006): stream keys, run-time rules,
used one-time tokens and the live registry's snapshot.

Only storage: what a key is, how it is hashed or sealed, which rules are valid
and what a live session means are decided in `chatgate.streams` (`keys.py`,
`rule_store.py`, `one_time.py`, `snapshot.py`), which hand in digests, sealed
bytes and plain rows.  Accounts are (username, domain) here, as in every
repository; the stream stores speak bare JIDs and map them.

Atomicity: a write is one transaction on the writer engine (SQLite's
``BEGIN IMMEDIATE`` holds the write lock for it; PostgreSQL locks the account
row, or relies on ``INSERT ... ON CONFLICT DO NOTHING`` against the unique
key), so processes sharing the database agree: one account has one key, one
key belongs to one account, a one-time token has one first user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.errors import StorageError
from chatgate.storage.models import (
    Account,
    Base,
    LiveSession,
    StreamKey,
    StreamRule,
    StreamTokenRevocation,
    StreamTokenUse,
    utcnow,
)
from chatgate.storage.repositories.owner import Owner, require_account_id

__all__ = [
    "LiveSessionRepository",
    "LiveSessionRow",
    "StreamKeyRepository",
    "StreamKeyRow",
    "StreamKeyTaken",
    "StreamRuleRepository",
    "TokenRevocationRepository",
    "TokenUseRepository",
]


class StreamKeyTaken(StorageError):
    """`put` was given a key (its digest) that another account already has."""


@dataclass(frozen=True, slots=True)
class StreamKeyRow:
    """A row of the key listing: whose key, its id and when it was made (never the key)."""

    username: str
    domain: str
    key_id: str
    created: datetime


async def _insert_if_absent(
    conn: AsyncConnection, model: type[Base], values: Mapping[str, Any]
) -> bool:
    """Insert one row unless its unique key is taken; True when it was inserted.

    ``INSERT ... ON CONFLICT DO NOTHING`` where the backend has it (one statement,
    atomic against concurrent inserts); elsewhere a savepoint around a plain insert.
    """
    dialect = conn.dialect.name
    if dialect == "sqlite":
        statement: Any = sqlite.insert(model).values(**values).on_conflict_do_nothing()
    elif dialect == "postgresql":
        statement = postgresql.insert(model).values(**values).on_conflict_do_nothing()
    else:
        try:
            async with conn.begin_nested():
                await conn.execute(insert(model).values(**values))
        except IntegrityError:
            return False
        return True
    return bool((await conn.execute(statement)).rowcount == 1)


class StreamKeyRepository:
    """Per-account stream keys: at most one an account, each digest on one account."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def owner_of(self, digest: bytes) -> tuple[str, str, str] | None:
        """(username, domain, key_id) of the key with this digest: one indexed read."""
        query = (
            select(Account.username, Account.domain, StreamKey.key_id)
            .join(Account, Account.id == StreamKey.account_id)
            .where(StreamKey.digest == digest)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else (row[0], row[1], row[2])

    async def sealed_of(self, owner: Owner) -> bytes | None:
        """The account's sealed key, or None when it has none (or does not exist)."""
        username, domain = owner
        query = (
            select(StreamKey.sealed)
            .join(Account, Account.id == StreamKey.account_id)
            .where(Account.username == username, Account.domain == domain)
        )
        async with self._engine.connect() as conn:
            sealed = (await conn.execute(query)).scalar_one_or_none()
        return None if sealed is None else bytes(sealed)

    async def put(self, owner: Owner, digest: bytes, key_id: str, sealed: bytes) -> str | None:
        """Give the account this key, replacing any it had; the replaced key's id.

        Raises `AccountNotFound`, and `StreamKeyTaken` when another account has
        a key with this digest (nothing changes then).
        """
        try:
            async with self._writer.begin() as conn:
                account_id = await require_account_id(conn, owner)
                old = await _delete_key(conn, account_id)
                await conn.execute(
                    insert(StreamKey).values(
                        account_id=account_id,
                        digest=digest,
                        key_id=key_id,
                        sealed=sealed,
                        created=utcnow(),
                    )
                )
        except IntegrityError:
            raise StreamKeyTaken("this stream key is another account's") from None
        return old

    async def revoke(self, owner: Owner) -> str | None:
        """Remove the account's key; its id, or None when it had none."""
        username, domain = owner
        async with self._writer.begin() as conn:
            account_id = (
                await conn.execute(
                    select(Account.id).where(Account.username == username, Account.domain == domain)
                )
            ).scalar_one_or_none()
            if account_id is None:
                return None
            return await _delete_key(conn, account_id)

    async def listing(self) -> list[StreamKeyRow]:
        """Every account that has a key (unordered: the caller sorts as it shows them)."""
        query = select(Account.username, Account.domain, StreamKey.key_id, StreamKey.created).join(
            Account, Account.id == StreamKey.account_id
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [StreamKeyRow(*row) for row in rows]


async def _delete_key(conn: AsyncConnection, account_id: int) -> str | None:
    old = (
        await conn.execute(select(StreamKey.key_id).where(StreamKey.account_id == account_id))
    ).scalar_one_or_none()
    if old is not None:
        await conn.execute(delete(StreamKey).where(StreamKey.account_id == account_id))
    return old


class StreamRuleRepository:
    """Rules added at run time, as text, in the order they were added."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def rules(self) -> list[str]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(StreamRule.rule).order_by(StreamRule.id))
            return list(rows.scalars())

    async def add(self, rule: str) -> bool:
        """Store the rule; False when it is already stored."""
        async with self._writer.begin() as conn:
            return await _insert_if_absent(conn, StreamRule, {"rule": rule, "created": utcnow()})

    async def remove(self, rule: str) -> bool:
        """Remove the rule; False when there was none."""
        async with self._writer.begin() as conn:
            result = await conn.execute(delete(StreamRule).where(StreamRule.rule == rule))
            return bool(result.rowcount)


class TokenUseRepository:
    """Used one-time tokens: the first (client, node) to use each, until it expires."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._writer = writer(engine)

    async def claim(
        self, token_id: str, client_id: str, node: str, expires_at: int
    ) -> tuple[str, str]:
        """Record this use unless the token was used before; the (client_id, node)
        of its first use, which is this one's when it was the first.  Atomic: of
        concurrent claims (any process), all read back the same first user."""
        values = {
            "token_id": token_id,
            "client_id": client_id,
            "node": node,
            "expires_at": expires_at,
        }
        query = select(StreamTokenUse.client_id, StreamTokenUse.node).where(
            StreamTokenUse.token_id == token_id
        )
        async with self._writer.begin() as conn:
            await _insert_if_absent(conn, StreamTokenUse, values)
            row = (await conn.execute(query)).one()
        return (row[0], row[1])

    async def forget_expired(self, now: int) -> int:
        """Drop tokens whose ``expires_at`` is at most `now`; how many were dropped."""
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(StreamTokenUse).where(StreamTokenUse.expires_at <= now)
            )
            return int(result.rowcount)


class TokenRevocationRepository:
    """Stream tokens revoked before they expire: their ids, until then."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def revoke(self, token_id: str, expires_at: int) -> bool:
        """Record a revocation; False if the token was revoked already."""
        async with self._writer.begin() as conn:
            inserted = await _insert_if_absent(
                conn, StreamTokenRevocation, {"token_id": token_id, "expires_at": expires_at}
            )
        return bool(inserted)

    async def revoked(self, now: int) -> set[str]:
        """The ids of revoked tokens that have not expired by `now`."""
        query = select(StreamTokenRevocation.token_id).where(StreamTokenRevocation.expires_at > now)
        async with self._engine.connect() as conn:
            return {row[0] for row in await conn.execute(query)}

    async def forget_expired(self, now: int) -> int:
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(StreamTokenRevocation).where(StreamTokenRevocation.expires_at <= now)
            )
            return int(result.rowcount)


class LiveSessionRow(NamedTuple):
    """A saved live session, as `chatgate.streams.snapshot` converts it."""

    kind: str  # "publish" or "play"
    stream: str
    identity: str | None
    client_id: str
    node: str
    credential: str | None
    started_at: float
    last_seen: float
    confirmed: bool

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What names the session: (kind, stream, node, client_id), unique in the table."""
        return (self.kind, self.stream, self.node, self.client_id)


_SESSION_COLUMNS = (
    LiveSession.kind,
    LiveSession.stream,
    LiveSession.identity,
    LiveSession.client_id,
    LiveSession.node,
    LiveSession.credential,
    LiveSession.started_at,
    LiveSession.last_seen,
    LiveSession.confirmed,
)

_DELETE_SESSION = delete(LiveSession).where(
    LiveSession.kind == bindparam("k"),
    LiveSession.stream == bindparam("s"),
    LiveSession.node == bindparam("n"),
    LiveSession.client_id == bindparam("c"),
)


class LiveSessionRepository:
    """The live registry's snapshot: one writer (the process holding the registry)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def load(self) -> list[LiveSessionRow]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(*_SESSION_COLUMNS).order_by(LiveSession.id))).all()
        return [LiveSessionRow(*row) for row in rows]

    async def replace(self, rows: Sequence[LiveSessionRow]) -> None:
        """Make the table hold exactly `rows` (unique by `LiveSessionRow.key`)."""
        async with self._writer.begin() as conn:
            await conn.execute(delete(LiveSession))
            await _insert_sessions(conn, rows)

    async def change(
        self, removed: Sequence[tuple[str, str, str, str]], added: Sequence[LiveSessionRow]
    ) -> None:
        """Delete the sessions named by `removed` (`LiveSessionRow.key` values), then
        insert `added` (a changed session is in both), in one transaction."""
        async with self._writer.begin() as conn:
            if removed:
                await conn.execute(
                    _DELETE_SESSION, [{"k": k, "s": s, "n": n, "c": c} for k, s, n, c in removed]
                )
            await _insert_sessions(conn, added)


async def _insert_sessions(conn: AsyncConnection, rows: Sequence[LiveSessionRow]) -> None:
    if rows:
        await conn.execute(insert(LiveSession), [row._asdict() for row in rows])
