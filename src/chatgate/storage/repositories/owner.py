"""The owner of per-account data, and finding its account row inside a transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from chatgate.storage.errors import AccountNotFound
from chatgate.storage.models import Account

#: (username, domain): a PRECIS-enforced localpart and the domain it lives on
Owner = tuple[str, str]


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
