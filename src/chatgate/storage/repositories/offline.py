"""Offline messages (XEP-0160): stored while the account has no available resource.

`store` enforces the per-account limit atomically (the count and the insert
happen under the write lock), and `take_all` hands each message out exactly
once: it deletes what it returns in one transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.models import Account, OfflineStanza
from chatgate.storage.records import OfflineMessage
from chatgate.storage.repositories.owner import Owner, find_account_id, require_account_id


class OfflineRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def store(self, owner: Owner, stanza: str, stamp: datetime, limit: int) -> bool:
        """Keep `stanza` for the owner; False when `limit` messages are already held.

        Raises AccountNotFound.
        """
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            held = (
                await conn.execute(
                    select(func.count())
                    .select_from(OfflineStanza)
                    .where(OfflineStanza.account_id == account_id)
                )
            ).scalar_one()
            if held >= limit:
                return False
            await conn.execute(
                insert(OfflineStanza).values(account_id=account_id, stanza=stanza, stamp=stamp)
            )
            return True

    async def take_all(self, owner: Owner) -> list[OfflineMessage]:
        """Remove and return the owner's messages, oldest first (empty for an unknown account)."""
        async with self._writer.begin() as conn:
            account_id = await find_account_id(conn, owner, lock=True)
            if account_id is None:
                return []
            rows = (
                await conn.execute(
                    select(OfflineStanza.id, OfflineStanza.stanza, OfflineStanza.stamp)
                    .where(OfflineStanza.account_id == account_id)
                    .order_by(OfflineStanza.id)
                )
            ).all()
            if rows:
                await conn.execute(
                    delete(OfflineStanza).where(
                        OfflineStanza.account_id == account_id,
                        OfflineStanza.id <= rows[-1][0],
                    )
                )
        return [OfflineMessage(id, stanza, stamp) for id, stanza, stamp in rows]

    async def count(self, owner: Owner) -> int:
        username, domain = owner
        query = (
            select(func.count())
            .select_from(OfflineStanza)
            .join(Account, Account.id == OfflineStanza.account_id)
            .where(Account.username == username, Account.domain == domain)
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()
