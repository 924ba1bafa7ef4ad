"""HTTP upload slots (XEP-0363): reserving one under the account's quota and rate,
claiming its single PUT, and finding what expired.

Every decision that must hold across server processes is taken in one
database transaction with the account's row locked (`require_account_id`):
the quota and the rate are counted and the slot inserted together, and a PUT
is claimed by a conditional UPDATE, so two processes (or two requests) can
neither both pass a full quota nor both store a file for one slot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.repositories.owner import Owner, require_account_id
from chatgate.storage.tables_uploads import UploadSlot

__all__ = ["Refused", "SlotRecord", "UploadRepository"]

#: a PUT begun this long ago and never finished is abandoned (its slot purged)
STUCK = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SlotRecord:
    token: str
    filename: str
    size: int
    content_type: str
    put_before: datetime
    uploading: datetime | None
    stored: datetime | None
    expires: datetime


@dataclass(frozen=True, slots=True)
class Refused:
    """Why no slot: `quota` (the account's unexpired slots hold too many bytes) or
    `rate` (too many slots in the window); `retry` is when asking again may work."""

    reason: str
    retry: datetime | None


def _record(row: UploadSlot) -> SlotRecord:
    return SlotRecord(
        row.token,
        row.filename,
        row.size,
        row.content_type,
        row.put_before,
        row.uploading,
        row.stored,
        row.expires,
    )


class UploadRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def reserve(
        self,
        owner: Owner,
        slot: SlotRecord,
        *,
        now: datetime,
        quota: int,
        per_window: int,
        window: timedelta,
    ) -> Refused | None:
        """Insert `slot` for `owner` unless the account's unexpired slots and this one
        would hold more than `quota` bytes, or it got `per_window` slots in the
        last `window`.  Raises AccountNotFound."""
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            since = now - window
            recent = select(func.count(), func.min(UploadSlot.created)).where(
                UploadSlot.account_id == account_id, UploadSlot.created > since
            )
            count, oldest = (await conn.execute(recent)).one()
            if count >= per_window:
                return Refused("rate", (oldest or now) + window)
            held = select(func.coalesce(func.sum(UploadSlot.size), 0), func.min(UploadSlot.expires))
            held = held.where(UploadSlot.account_id == account_id, UploadSlot.expires > now)
            used, first_expiry = (await conn.execute(held)).one()
            if int(used) + slot.size > quota:
                return Refused("quota", first_expiry)
            await conn.execute(
                insert(UploadSlot).values(
                    account_id=account_id,
                    token=slot.token,
                    filename=slot.filename,
                    size=slot.size,
                    content_type=slot.content_type,
                    created=now,
                    put_before=slot.put_before,
                    expires=slot.expires,
                )
            )
        return None

    async def get(self, token: str) -> SlotRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(UploadSlot).where(UploadSlot.token == token))).first()
        return None if row is None else _record(row)  # type: ignore[arg-type]

    async def claim_put(self, token: str, now: datetime) -> bool:
        """Mark the slot's PUT as begun; False when it began already, the slot's
        time for a PUT is over, or there is no such slot."""
        query = (
            update(UploadSlot)
            .where(
                UploadSlot.token == token,
                UploadSlot.uploading.is_(None),
                UploadSlot.put_before > now,
            )
            .values(uploading=now)
        )
        async with self._writer.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    async def stored(self, token: str, now: datetime) -> None:
        """The PUT's file is complete."""
        async with self._writer.begin() as conn:
            await conn.execute(
                update(UploadSlot).where(UploadSlot.token == token).values(stored=now)
            )

    async def release_put(self, token: str) -> None:
        """A PUT failed before its last byte: the slot takes another (until its time ends)."""
        async with self._writer.begin() as conn:
            await conn.execute(
                update(UploadSlot)
                .where(UploadSlot.token == token, UploadSlot.stored.is_(None))
                .values(uploading=None)
            )

    async def expired(self, now: datetime, limit: int = 1000) -> list[str]:
        """Tokens (at most `limit`) of slots that are over: expired, never used in
        their time for a PUT (their bytes leave the quota), or whose PUT began
        `STUCK` ago and never ended."""
        over = or_(
            UploadSlot.expires <= now,
            and_(UploadSlot.uploading.is_(None), UploadSlot.put_before <= now),
            and_(UploadSlot.stored.is_(None), UploadSlot.uploading <= now - STUCK),
        )
        query = select(UploadSlot.token).where(over).limit(limit)
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def forget(self, tokens: Iterable[str]) -> None:
        tokens = list(tokens)
        if not tokens:
            return
        async with self._writer.begin() as conn:
            await conn.execute(delete(UploadSlot).where(UploadSlot.token.in_(tokens)))

    async def known(self, tokens: Iterable[str]) -> set[str]:
        """Which of `tokens` a slot still has (the others' files are orphans)."""
        tokens = list(tokens)
        if not tokens:
            return set()
        query = select(UploadSlot.token).where(UploadSlot.token.in_(tokens))
        async with self._engine.connect() as conn:
            return set((await conn.execute(query)).scalars())
