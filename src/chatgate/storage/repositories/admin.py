"""The administration tables (migration 0009): administrators, bearer tokens,
console login sessions and the audit log.

Only storage: hashing passwords and token secrets, what groups allow, when a
console session times out, what an audit entry says are decided in
`chatgate.http.auth`, `chatgate.http.console` and `chatgate.http.api`, which
hand in hashes, plain strings and Unix seconds.  Groups are stored as one
comma-separated string and handed out as a tuple.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import delete, exists, func, insert, literal, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.models import AdminAuditEntry, AdminConsoleSession, AdminToken, AdminUser


def _groups(text: str) -> tuple[str, ...]:
    return tuple(g for g in text.split(",") if g)


def _joined(groups: Sequence[str]) -> str:
    return ",".join(groups)


class AdminUserRow(NamedTuple):
    name: str
    password_hash: str
    digest_realm: str | None
    digest_md5: str | None
    digest_sha256: str | None
    groups: tuple[str, ...]
    created_at: int


class AdminUserRepository:
    """Administrators chatgate keeps (the `basic` and `digest` methods)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def add(self, row: AdminUserRow) -> bool:
        """Store a new administrator; False if the name is taken."""
        values = row._asdict() | {"groups": _joined(row.groups)}
        try:
            async with self._writer.begin() as conn:
                await conn.execute(insert(AdminUser).values(**values))
        except IntegrityError:
            return False
        return True

    async def add_first(self, row: AdminUserRow) -> bool:
        """Store `row` only if there is no administrator yet, atomically for every
        process sharing the database (the setup wizard's first administrator);
        False if one exists."""
        values = row._asdict() | {"groups": _joined(row.groups)}
        table = AdminUser.__table__
        async with self._writer.begin() as conn:
            if conn.dialect.name == "postgresql":
                # READ COMMITTED would let two empty-table checks both pass
                await conn.execute(text("LOCK TABLE admin_users IN SHARE ROW EXCLUSIVE MODE"))
            chosen = select(
                *(literal(v, type_=table.c[k].type).label(k) for k, v in values.items())
            )
            query = insert(AdminUser).from_select(
                list(values), chosen.where(~exists().select_from(table))
            )
            result = await conn.execute(query)
        return bool(result.rowcount)

    async def get(self, name: str) -> AdminUserRow | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(AdminUser.__table__).where(AdminUser.name == name))
            ).first()
        return None if row is None else _user(row)

    async def all(self) -> list[AdminUserRow]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(AdminUser.__table__).order_by(AdminUser.name))
            return [_user(r) for r in rows]

    async def count(self) -> int:
        async with self._engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(AdminUser))).scalar() or 0
            )

    async def update(self, name: str, **changes: object) -> bool:
        """Change some columns of `name` (`groups` as a sequence); False if unknown."""
        if "groups" in changes:
            changes["groups"] = _joined(changes["groups"])  # type: ignore[arg-type]
        async with self._writer.begin() as conn:
            result = await conn.execute(
                update(AdminUser).where(AdminUser.name == name).values(**changes)
            )
        return bool(result.rowcount)

    async def remove(self, name: str) -> bool:
        async with self._writer.begin() as conn:
            result = await conn.execute(delete(AdminUser).where(AdminUser.name == name))
        return bool(result.rowcount)


def _user(row: object) -> AdminUserRow:
    m = row._mapping  # type: ignore[attr-defined]
    return AdminUserRow(
        m["name"],
        m["password_hash"],
        m["digest_realm"],
        m["digest_md5"],
        m["digest_sha256"],
        _groups(m["groups"]),
        m["created_at"],
    )


class AdminTokenRow(NamedTuple):
    id: str
    label: str
    secret_hash: str
    groups: tuple[str, ...]
    created_by: str
    created_at: int
    expires_at: int | None
    last_used_at: int | None


class AdminTokenRepository:
    """Bearer tokens: their ids, the hash of their secrets, groups and expiry."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def add(self, row: AdminTokenRow) -> None:
        values = row._asdict() | {"groups": _joined(row.groups)}
        async with self._writer.begin() as conn:
            await conn.execute(insert(AdminToken).values(**values))

    async def get(self, token_id: str) -> AdminTokenRow | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(AdminToken.__table__).where(AdminToken.id == token_id))
            ).first()
        return None if row is None else _token(row)

    async def all(self) -> list[AdminTokenRow]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(AdminToken.__table__).order_by(AdminToken.created_at))
            return [_token(r) for r in rows]

    async def used(self, token_id: str, now: int) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(
                update(AdminToken).where(AdminToken.id == token_id).values(last_used_at=now)
            )

    async def remove(self, token_id: str) -> bool:
        async with self._writer.begin() as conn:
            result = await conn.execute(delete(AdminToken).where(AdminToken.id == token_id))
        return bool(result.rowcount)

    async def forget_expired(self, now: int) -> int:
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(AdminToken).where(
                    AdminToken.expires_at.is_not(None), AdminToken.expires_at <= now
                )
            )
        return int(result.rowcount)


def _token(row: object) -> AdminTokenRow:
    m = row._mapping  # type: ignore[attr-defined]
    return AdminTokenRow(
        m["id"],
        m["label"],
        m["secret_hash"],
        _groups(m["groups"]),
        m["created_by"],
        m["created_at"],
        m["expires_at"],
        m["last_used_at"],
    )


class ConsoleSessionRow(NamedTuple):
    id_hash: str
    admin: str
    groups: tuple[str, ...]
    method: str
    csrf_token: str
    created_at: int
    last_seen_at: int
    #: what the login is shown once on its next page, sealed by the console (opaque here)
    pending: str | None = None


class ConsoleSessionRepository:
    """The web console's login sessions, by the hash of their cookie."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def add(self, row: ConsoleSessionRow) -> None:
        values = row._asdict() | {"groups": _joined(row.groups)}
        async with self._writer.begin() as conn:
            await conn.execute(insert(AdminConsoleSession).values(**values))

    async def get(self, id_hash: str) -> ConsoleSessionRow | None:
        table = AdminConsoleSession.__table__
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(table).where(AdminConsoleSession.id_hash == id_hash))
            ).first()
        if row is None:
            return None
        m = row._mapping
        return ConsoleSessionRow(
            m["id_hash"],
            m["admin"],
            _groups(m["groups"]),
            m["method"],
            m["csrf_token"],
            m["created_at"],
            m["last_seen_at"],
            m["pending"],
        )

    async def replace_pending(self, id_hash: str, expected: str | None, new: str | None) -> bool:
        """Set the session's pending value to `new` if it is still `expected` (None:
        nothing pending); False when another request changed it first (or the
        session is gone).  Taking it is replacing what was read by None: of two
        requests that read the same value, one takes it."""
        column = AdminConsoleSession.pending
        still = column.is_(None) if expected is None else column == expected
        async with self._writer.begin() as conn:
            result = await conn.execute(
                update(AdminConsoleSession)
                .where(AdminConsoleSession.id_hash == id_hash, still)
                .values(pending=new)
            )
        return bool(result.rowcount)

    async def seen(self, id_hash: str, now: int) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(
                update(AdminConsoleSession)
                .where(AdminConsoleSession.id_hash == id_hash)
                .values(last_seen_at=now)
            )

    async def remove(self, id_hash: str) -> bool:
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(AdminConsoleSession).where(AdminConsoleSession.id_hash == id_hash)
            )
        return bool(result.rowcount)

    async def remove_admin(self, admin: str) -> int:
        """End every console session of `admin` (deleted, password changed)."""
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(AdminConsoleSession).where(AdminConsoleSession.admin == admin)
            )
        return int(result.rowcount)

    async def forget_idle(self, seen_before: int) -> int:
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(AdminConsoleSession).where(AdminConsoleSession.last_seen_at < seen_before)
            )
        return int(result.rowcount)


class AuditRow(NamedTuple):
    id: int
    at: int
    actor: str
    method: str
    address: str | None
    action: str
    target: str | None
    detail: str | None


class AuditRepository:
    """The audit log: appended to, read newest first in pages."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def append(
        self,
        at: int,
        actor: str,
        method: str,
        address: str | None,
        action: str,
        target: str | None,
        detail: str | None,
    ) -> int:
        async with self._writer.begin() as conn:
            result = await conn.execute(
                insert(AdminAuditEntry).values(
                    at=at,
                    actor=actor,
                    method=method,
                    address=address,
                    action=action,
                    target=target,
                    detail=detail,
                )
            )
            key = result.inserted_primary_key
        return int(key[0]) if key else 0

    async def page(
        self, *, before_id: int | None = None, limit: int = 50, action: str | None = None
    ) -> list[AuditRow]:
        """Entries newest first, older than `before_id` when given (keyset paging)."""
        query = select(AdminAuditEntry.__table__).order_by(AdminAuditEntry.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(AdminAuditEntry.id < before_id)
        if action is not None:
            query = query.where(AdminAuditEntry.action == action)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
            return [AuditRow(*r) for r in rows]

    async def forget_before(self, at: int) -> int:
        async with self._writer.begin() as conn:
            result = await conn.execute(delete(AdminAuditEntry).where(AdminAuditEntry.at < at))
        return int(result.rowcount)
