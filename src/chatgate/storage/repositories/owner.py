"""The owner of per-account data, and finding its account row inside a transaction."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.types import Integer

from chatgate.storage.errors import AccountNotFound
from chatgate.storage.models import Account

#: (username, domain): a PRECIS-enforced localpart and the domain it lives on
Owner = tuple[str, str]

#: first key of the PostgreSQL advisory locks on names (two-int keys never meet the
#: one-bigint keys, such as the migrations' lock)
NAME_LOCK_CLASS = 0x6367_6E6D  # "cgnm"

_LOCK_NAMES = text(
    "SELECT count(pg_advisory_xact_lock(:lock_class, k)) FROM unnest(:keys) AS k"
).bindparams(bindparam("keys", type_=ARRAY(Integer())))


async def find_account_id(conn: AsyncConnection, owner: Owner, *, lock: bool = False) -> int | None:
    """The account's id, or None.  `lock` holds the account row until commit (PostgreSQL).

    The row lock serializes writes to one account's data, so a check and the
    write that depends on it are atomic; SQLite gets the same guarantee from
    the writer engine's ``BEGIN IMMEDIATE``.
    """
    username, domain = owner
    query = select(Account.id).where(Account.username == username, Account.domain == domain)
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).scalar_one_or_none()


async def require_account_id(conn: AsyncConnection, owner: Owner) -> int:
    """The account's id, locked for the rest of the transaction; AccountNotFound when absent."""
    account_id = await find_account_id(conn, owner, lock=True)
    if account_id is None:
        raise AccountNotFound(*owner)
    return account_id


async def lock_names(conn: AsyncConnection, names: Iterable[Owner]) -> None:
    """Inside a write transaction on PostgreSQL: hold, until commit, a lock on each
    name, so transactions that may claim a name (creating an account, holding or
    approving a registration, redeeming an invitation for it) take turns.  READ
    COMMITTED would otherwise let two of them both find the name free, one in
    `accounts` and the other in `pending_registrations`.  Keys are taken in
    ascending order (no deadlock between two batches); a hash collision only
    makes two names wait for each other.  SQLite needs nothing: the writer's
    ``BEGIN IMMEDIATE`` already serializes every write."""
    if conn.dialect.name != "postgresql":
        return
    keys = sorted({_name_key(username, domain) for username, domain in names})
    if keys:
        await conn.execute(_LOCK_NAMES, {"lock_class": NAME_LOCK_CLASS, "keys": keys})


def _name_key(username: str, domain: str) -> int:
    digest = hashlib.blake2b(f"{username}@{domain}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


async def accounts_having(
    engine: AsyncEngine, account_id: InstrumentedAttribute[int], limit: int
) -> set[str] | None:
    """The bare JIDs of the accounts that own a row whose account column is
    `account_id` (a blocklist entry, a push registration), or None when there
    are more than `limit`: what a module learns once at start so that the many
    accounts without any need no read."""
    query = (
        select(Account.username, Account.domain)
        .where(Account.id.in_(select(account_id).distinct()))
        .limit(limit + 1)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    if len(rows) > limit:
        return None
    return {f"{username}@{domain}" for username, domain in rows}
