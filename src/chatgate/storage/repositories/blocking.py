"""Blocklists (XEP-0191): the JIDs each account blocks, as prepared JID text.

A change is one transaction under the account's row lock (PostgreSQL) or the
writer's ``BEGIN IMMEDIATE`` (SQLite), and returns what actually changed, so
the module pushes exactly that to the user's resources (XEP-0191 §3.3, §3.4).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.models import Account
from chatgate.storage.repositories.owner import (
    Owner,
    accounts_having,
    find_account_id,
    require_account_id,
)
from chatgate.storage.tables_blocking import BlockedJid


class BlocklistFull(Exception):
    """Blocking would take the account's list past its limit; nothing was stored."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a blocklist holds at most {limit} JIDs")
        self.limit = limit


class BlocklistRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def items(self, owner: Owner) -> frozenset[str]:
        """The JIDs the owner blocks (empty for an unknown account)."""
        username, domain = owner
        query = (
            select(BlockedJid.jid)
            .join(Account, Account.id == BlockedJid.account_id)
            .where(Account.username == username, Account.domain == domain)
        )
        async with self._engine.connect() as conn:
            return frozenset((await conn.execute(query)).scalars())

    async def blockers(self, limit: int) -> set[str] | None:
        """The bare JIDs of the accounts whose list is not empty, or None when there
        are more than `limit` (one query at start: the others' lists need no read)."""
        return await accounts_having(self._engine, BlockedJid.account_id, limit)

    async def block(self, owner: Owner, jids: Iterable[str], limit: int) -> list[str]:
        """Add `jids`; returns those that were not blocked yet, in the order given.

        Raises BlocklistFull (nothing added) when the list would then hold more
        than `limit` JIDs, AccountNotFound when the account does not exist.
        """
        wanted = list(dict.fromkeys(jids))
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            held = set(
                (
                    await conn.execute(
                        select(BlockedJid.jid).where(BlockedJid.account_id == account_id)
                    )
                ).scalars()
            )
            added = [jid for jid in wanted if jid not in held]
            if len(held) + len(added) > limit:
                raise BlocklistFull(limit)
            if added:
                await conn.execute(
                    insert(BlockedJid), [{"account_id": account_id, "jid": j} for j in added]
                )
            return added

    async def unblock(self, owner: Owner, jids: Iterable[str] | None) -> list[str]:
        """Remove `jids` (every JID when None: "unblock all", XEP-0191 §3.5); returns
        those that were blocked and are not any more."""
        async with self._writer.begin() as conn:
            account_id = await find_account_id(conn, owner, lock=True)
            if account_id is None:
                return []
            mine = BlockedJid.account_id == account_id
            if jids is None:
                query = select(BlockedJid.jid).where(mine)
            else:
                wanted = list(dict.fromkeys(jids))
                if not wanted:
                    return []
                query = select(BlockedJid.jid).where(mine, BlockedJid.jid.in_(wanted))
            removed = sorted((await conn.execute(query)).scalars())
            if removed:
                await conn.execute(delete(BlockedJid).where(mine, BlockedJid.jid.in_(removed)))
            return removed

    async def count(self, owner: Owner) -> int:
        username, domain = owner
        query = (
            select(func.count())
            .select_from(BlockedJid)
            .join(Account, Account.id == BlockedJid.account_id)
            .where(Account.username == username, Account.domain == domain)
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())
