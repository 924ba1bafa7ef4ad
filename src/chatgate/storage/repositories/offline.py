"""Offline messages (XEP-0160): stored while the account has no available resource.

`store` enforces the quotas atomically (the sums and the insert happen under
the write lock): a number of messages and of stored bytes per recipient, and a
share of each per sender, so that one sender cannot fill another account's
store.  Bytes are those of the stored (serialized, UTF-8) form, which is what
the database holds and what delivery reads back: escaping can make it several
times larger than the stanza that arrived (each `>` of a body is written `&gt;`).

Delivery reads with `batch` (oldest first, bounded in count and bytes) and
removes with `delete`, by id, only what it wrote to the session: nothing is
deleted that was not delivered, so a failure half-way loses no message.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.models import Account, OfflineStanza
from chatgate.storage.records import OfflineMessage
from chatgate.storage.repositories.owner import Owner, find_account_id, require_account_id


@dataclass(frozen=True, slots=True)
class OfflineQuota:
    """What one recipient may hold, in all and from any one sender (bare JID)."""

    messages: int
    bytes: int
    sender_messages: int
    sender_bytes: int


class Stored(enum.Enum):
    """The outcome of `OfflineRepository.store`."""

    STORED = "stored"
    FULL = "full"  # the recipient's count or bytes would be exceeded
    SENDER_FULL = "sender-full"  # this sender's share of them would be exceeded


class OfflineRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def store(
        self, owner: Owner, sender: str, stanza: str, stamp: datetime, quota: OfflineQuota
    ) -> Stored:
        """Keep `stanza` from `sender` (a bare JID) for the owner, if the quota allows.

        Raises AccountNotFound.
        """
        # Bytes as stored; no encoded copy for the common ASCII case (a stored form
        # can be many times the stanza that arrived).
        size = len(stanza) if stanza.isascii() else len(stanza.encode())
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            from_sender = OfflineStanza.sender == sender
            held, held_bytes, sent, sent_bytes = (
                await conn.execute(
                    select(
                        func.count(),
                        func.coalesce(func.sum(OfflineStanza.size), 0),
                        func.coalesce(func.sum(case((from_sender, 1), else_=0)), 0),
                        func.coalesce(
                            func.sum(case((from_sender, OfflineStanza.size), else_=0)), 0
                        ),
                    ).where(OfflineStanza.account_id == account_id)
                )
            ).one()
            if held + 1 > quota.messages or held_bytes + size > quota.bytes:
                return Stored.FULL
            if sent + 1 > quota.sender_messages or sent_bytes + size > quota.sender_bytes:
                return Stored.SENDER_FULL
            await conn.execute(
                insert(OfflineStanza).values(
                    account_id=account_id, sender=sender, size=size, stanza=stanza, stamp=stamp
                )
            )
            return Stored.STORED

    async def batch(
        self, owner: Owner, *, after: int, max_messages: int, max_bytes: int
    ) -> list[OfflineMessage]:
        """The owner's oldest messages with an id above `after`: at most
        `max_messages`, and at most `max_bytes` of stored text unless the first
        message alone is larger (it then comes alone, so delivery never stalls).
        Reads only; empty for an unknown account."""
        username, domain = owner
        async with self._engine.connect() as conn:
            sizes = (
                await conn.execute(
                    select(OfflineStanza.id, OfflineStanza.size)
                    .join(Account, Account.id == OfflineStanza.account_id)
                    .where(
                        Account.username == username,
                        Account.domain == domain,
                        OfflineStanza.id > after,
                    )
                    .order_by(OfflineStanza.id)
                    .limit(max_messages)
                )
            ).all()
            ids: list[int] = []
            total = 0
            for message_id, size in sizes:
                total += size
                if ids and total > max_bytes:
                    break
                ids.append(message_id)
            if not ids:
                return []
            rows = (
                await conn.execute(
                    select(OfflineStanza.id, OfflineStanza.stanza, OfflineStanza.stamp)
                    .where(OfflineStanza.id.in_(ids))
                    .order_by(OfflineStanza.id)
                )
            ).all()
        return [OfflineMessage(id, stanza, stamp) for id, stanza, stamp in rows]

    async def delete(self, owner: Owner, ids: Sequence[int]) -> int:
        """Remove the owner's messages with these ids; returns how many were removed."""
        if not ids:
            return 0
        async with self._writer.begin() as conn:
            account_id = await find_account_id(conn, owner, lock=True)
            if account_id is None:
                return 0
            result = await conn.execute(
                delete(OfflineStanza).where(
                    OfflineStanza.account_id == account_id, OfflineStanza.id.in_(ids)
                )
            )
            return result.rowcount

    async def usage(self, owner: Owner) -> tuple[int, int]:
        """(messages, stored bytes) held for the owner."""
        username, domain = owner
        query = (
            select(func.count(), func.coalesce(func.sum(OfflineStanza.size), 0))
            .select_from(OfflineStanza)
            .join(Account, Account.id == OfflineStanza.account_id)
            .where(Account.username == username, Account.domain == domain)
        )
        async with self._engine.connect() as conn:
            count, size = (await conn.execute(query)).one()
        return count, size

    async def count(self, owner: Owner) -> int:
        """Messages held for the owner."""
        return (await self.usage(owner))[0]

    async def totals(self) -> tuple[int, int, int, int]:
        """Messages stored, their bytes, accounts with any, and the largest queue:
        one aggregate query (for metrics, run at most once a minute)."""
        per_account = (
            select(
                func.count().label("messages"),
                func.coalesce(func.sum(OfflineStanza.size), 0).label("bytes"),
            )
            .group_by(OfflineStanza.account_id)
            .subquery()
        )
        query = select(
            func.coalesce(func.sum(per_account.c.messages), 0),
            func.coalesce(func.sum(per_account.c.bytes), 0),
            func.count(),
            func.coalesce(func.max(per_account.c.messages), 0),
        ).select_from(per_account)
        async with self._engine.connect() as conn:
            messages, size, accounts, largest = (await conn.execute(query)).one()
        return int(messages), int(size), int(accounts), int(largest)
