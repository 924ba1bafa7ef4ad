"""Push registrations (XEP-0357): which app servers an account asked to be notified
through, with the publish-options each one needs (usually a secret).

An account holds at most a bounded number of registrations; enabling one that
exists (same app server and node) replaces its options.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.models import Account
from chatgate.storage.repositories.owner import (
    Owner,
    accounts_having,
    find_account_id,
    require_account_id,
)
from chatgate.storage.tables_blocking import PushRegistration


@dataclass(frozen=True, slots=True)
class PushTarget:
    """One registration: the app server's JID, its node and the publish-options."""

    service: str
    node: str
    options: dict[str, list[str]]


class TooManyRegistrations(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"an account holds at most {limit} push registrations")
        self.limit = limit


class PushRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def enable(
        self, owner: Owner, service: str, node: str, options: dict[str, list[str]], limit: int
    ) -> None:
        """Add or replace the registration (service, node).  Raises AccountNotFound,
        TooManyRegistrations (nothing changed)."""
        text = json.dumps(options, sort_keys=True)
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            mine = PushRegistration.account_id == account_id
            same = (PushRegistration.service == service) & (PushRegistration.node == node)
            result = await conn.execute(
                update(PushRegistration).where(mine, same).values(options=text)
            )
            if result.rowcount:
                return
            held = (
                await conn.execute(select(func.count()).select_from(PushRegistration).where(mine))
            ).scalar_one()
            if held >= limit:
                raise TooManyRegistrations(limit)
            await conn.execute(
                insert(PushRegistration).values(
                    account_id=account_id, service=service, node=node, options=text
                )
            )

    async def disable(self, owner: Owner, service: str, node: str | None) -> int:
        """Remove the registration (service, node), or every one with `service` when
        `node` is None; returns how many went."""
        async with self._writer.begin() as conn:
            account_id = await find_account_id(conn, owner, lock=True)
            if account_id is None:
                return 0
            query = delete(PushRegistration).where(
                PushRegistration.account_id == account_id, PushRegistration.service == service
            )
            if node is not None:
                query = query.where(PushRegistration.node == node)
            return (await conn.execute(query)).rowcount

    async def registered(self, limit: int) -> set[str] | None:
        """The bare JIDs of the accounts with a registration, or None when there are
        more than `limit` (read once at start: the others need no read per message)."""
        return await accounts_having(self._engine, PushRegistration.account_id, limit)

    async def targets(self, owner: Owner) -> list[PushTarget]:
        """The account's registrations, oldest first (empty for an unknown account)."""
        username, domain = owner
        query = (
            select(PushRegistration.service, PushRegistration.node, PushRegistration.options)
            .join(Account, Account.id == PushRegistration.account_id)
            .where(Account.username == username, Account.domain == domain)
            .order_by(PushRegistration.id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [PushTarget(service, node, json.loads(options)) for service, node, options in rows]
