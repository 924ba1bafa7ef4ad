"""Rosters (RFC 6121 §2): items, the roster version, and pending inbound subscriptions.

Every change to an item bumps the account's roster version (RFC 6121 §2.6)
in the same transaction, so a client that cached version N and asks again
gets exactly the changes after N.  Pending inbound requests are not roster
items and do not change the version.

Both kinds of row are counted against a per-account limit in the transaction
that would add one (`RosterLimitReached`): these two methods are the only
places rows are inserted, so no path can grow a roster past its limit.
"""

from __future__ import annotations

import json

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.models import (
    Account,
    RosterEntry,
    RosterVersion,
    SubscriptionRequest,
    utcnow,
)
from chatgate.storage.records import RosterItem, Subscription
from chatgate.storage.repositories.owner import Owner, require_account_id

_ITEM_COLUMNS = (
    RosterEntry.contact_jid,
    RosterEntry.name,
    RosterEntry.subscription,
    RosterEntry.ask,
    RosterEntry.approved,
    RosterEntry.groups,
)


def _record(row: tuple) -> RosterItem:
    jid, name, subscription, ask, approved, groups = row
    return RosterItem(
        jid=jid,
        name=name,
        subscription=Subscription(subscription),
        ask=bool(ask),
        approved=bool(approved),
        groups=tuple(json.loads(groups)),
    )


def _values(item: RosterItem) -> dict:
    return {
        "name": item.name,
        "subscription": item.subscription.value,
        "ask": item.ask,
        "approved": item.approved,
        "groups": json.dumps(list(item.groups), ensure_ascii=False),
    }


class RosterLimitReached(Exception):
    """Adding a row would take the account past its limit; nothing was written.

    `what` is "items" (roster items) or "requests" (pending inbound requests).
    """

    def __init__(self, what: str, limit: int) -> None:
        noun = "roster items" if what == "items" else "pending subscription requests"
        super().__init__(f"at most {limit} {noun} per account")
        self.what = what
        self.limit = limit


def _of(owner: Owner) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    username, domain = owner
    return (Account.username == username, Account.domain == domain)


class RosterRepository:
    """One account's roster.

    Reads of an unknown account answer empty; writes raise AccountNotFound.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def items(self, owner: Owner) -> list[RosterItem]:
        query = (
            select(*_ITEM_COLUMNS)
            .join(Account, Account.id == RosterEntry.account_id)
            .where(*_of(owner))
            .order_by(RosterEntry.id)
        )
        async with self._engine.connect() as conn:
            return [_record(row) for row in (await conn.execute(query)).all()]

    async def item(self, owner: Owner, contact_jid: str) -> RosterItem | None:
        query = (
            select(*_ITEM_COLUMNS)
            .join(Account, Account.id == RosterEntry.account_id)
            .where(*_of(owner), RosterEntry.contact_jid == contact_jid)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else _record(row)

    async def count(self, owner: Owner) -> int:
        query = (
            select(func.count())
            .select_from(RosterEntry)
            .join(Account, Account.id == RosterEntry.account_id)
            .where(*_of(owner))
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()

    async def version(self, owner: Owner) -> int:
        """The current roster version; 0 for a new (or unknown) account."""
        query = (
            select(RosterVersion.version)
            .join(Account, Account.id == RosterVersion.account_id)
            .where(*_of(owner))
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none() or 0

    async def put(self, owner: Owner, item: RosterItem, max_items: int | None = None) -> int:
        """Add or replace the item for `item.jid`; returns the new roster version.

        Replacing is always allowed; adding an item when the roster already holds
        `max_items` raises RosterLimitReached.  Raises AccountNotFound.
        """
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            values = _values(item)
            result = await conn.execute(
                update(RosterEntry)
                .where(RosterEntry.account_id == account_id, RosterEntry.contact_jid == item.jid)
                .values(**values)
            )
            if result.rowcount == 0:
                if max_items is not None:
                    held = await conn.execute(
                        select(func.count())
                        .select_from(RosterEntry)
                        .where(RosterEntry.account_id == account_id)
                    )
                    if held.scalar_one() >= max_items:
                        raise RosterLimitReached("items", max_items)
                await conn.execute(
                    insert(RosterEntry).values(
                        account_id=account_id, contact_jid=item.jid, **values
                    )
                )
            return await self._bump(conn, account_id)

    async def remove(self, owner: Owner, contact_jid: str) -> int | None:
        """Remove the item; returns the new version, or None (and no bump) when absent.

        Raises AccountNotFound.
        """
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            result = await conn.execute(
                delete(RosterEntry).where(
                    RosterEntry.account_id == account_id, RosterEntry.contact_jid == contact_jid
                )
            )
            if result.rowcount == 0:
                return None
            return await self._bump(conn, account_id)

    async def pending_in(self, owner: Owner) -> list[str]:
        """Contacts whose subscription request awaits the user's answer, oldest first."""
        query = (
            select(SubscriptionRequest.contact_jid)
            .join(Account, Account.id == SubscriptionRequest.account_id)
            .where(*_of(owner))
            .order_by(SubscriptionRequest.id)
        )
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).scalars())

    async def add_pending_in(
        self,
        owner: Owner,
        contact_jid: str,
        status: str | None,
        max_requests: int | None = None,
    ) -> None:
        """Record (or refresh the status of) an inbound request.

        Refreshing is always allowed; a new request when `max_requests` are
        already pending raises RosterLimitReached.  Raises AccountNotFound.
        """
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            result = await conn.execute(
                update(SubscriptionRequest)
                .where(
                    SubscriptionRequest.account_id == account_id,
                    SubscriptionRequest.contact_jid == contact_jid,
                )
                .values(status=status)
            )
            if result.rowcount == 0:
                if max_requests is not None:
                    held = await conn.execute(
                        select(func.count())
                        .select_from(SubscriptionRequest)
                        .where(SubscriptionRequest.account_id == account_id)
                    )
                    if held.scalar_one() >= max_requests:
                        raise RosterLimitReached("requests", max_requests)
                await conn.execute(
                    insert(SubscriptionRequest).values(
                        account_id=account_id,
                        contact_jid=contact_jid,
                        status=status,
                        created=utcnow(),
                    )
                )

    async def remove_pending_in(self, owner: Owner, contact_jid: str) -> bool:
        """Forget an inbound request; False when there was none (or no such account)."""
        async with self._writer.begin() as conn:
            account_ids = select(Account.id).where(*_of(owner)).scalar_subquery()
            result = await conn.execute(
                delete(SubscriptionRequest).where(
                    SubscriptionRequest.account_id == account_ids,
                    SubscriptionRequest.contact_jid == contact_jid,
                )
            )
            return result.rowcount > 0

    async def forget_contacts_on(self, domain: str) -> int:
        """Delete every roster item and pending request, in any account, whose contact
        is on `domain`, bumping each changed roster's version: after a crash, what
        the identities of an anonymous host (all gone) left in others' rosters.
        Returns how many rows went."""
        on_domain = "%@" + domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        async with self._writer.begin() as conn:
            items = RosterEntry.contact_jid.like(on_domain, escape="\\")
            changed = (await conn.execute(select(RosterEntry.account_id).where(items))).scalars()
            accounts = set(changed)
            removed = (await conn.execute(delete(RosterEntry).where(items))).rowcount
            requests = SubscriptionRequest.contact_jid.like(on_domain, escape="\\")
            removed += (await conn.execute(delete(SubscriptionRequest).where(requests))).rowcount
            for account_id in sorted(accounts):
                await self._bump(conn, account_id)
        return removed

    @staticmethod
    async def _bump(conn: AsyncConnection, account_id: int) -> int:
        result = await conn.execute(
            update(RosterVersion)
            .where(RosterVersion.account_id == account_id)
            .values(version=RosterVersion.version + 1)
            .returning(RosterVersion.version)
        )
        version = result.scalar_one_or_none()
        if version is None:  # created before roster versions were recorded
            version = 1
            await conn.execute(insert(RosterVersion).values(account_id=account_id, version=1))
        return version
