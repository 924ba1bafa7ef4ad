"""Creating accounts as registration does, and the fields (XEP-0077) an account gave.

This repository owns the ``registration_fields`` table (migration 0002): the
name, email... an account gave when it registered.  It also owns the one rule
about who holds a name (`claim_name`): an account, a pending registration
(`pending_registrations.py`) or another usable invitation (`invitations.py`)
holds it, and a new account or pending registration may not take it.

Creating an account is one transaction spanning those aggregates: the name is
claimed (and the presented invitation redeemed), the account is created with
its SCRAM keys, its legacy secrets (`legacy.py`) and its fields, all at once or
not at all; `create_accounts` is the bulk form for `chatgate user import`.

Callers hand in derived secrets only; passwords never reach this module.
Usernames are already PRECIS-enforced.  Nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatgate.auth.credentials import ScramKeys
from chatgate.storage.engine import writer
from chatgate.storage.errors import AccountExists
from chatgate.storage.models import Account, PendingRegistration, RegistrationField, utcnow
from chatgate.storage.repositories.accounts import BATCH_SIZE, AccountRepository
from chatgate.storage.repositories.invitations import claim_invitation, reserved_names
from chatgate.storage.repositories.legacy import put_secrets, put_secrets_many
from chatgate.storage.repositories.legacy_records import AccountWithSecrets, LegacySecrets
from chatgate.storage.repositories.owner import (
    Owner,
    find_account_id,
    lock_names,
    require_account_id,
)

__all__ = ["RegistrationRepository", "claim_name", "held_names", "put_fields"]


class RegistrationRepository:
    """New accounts with everything registration stores, and registration fields.

    Every method is one transaction.  Reads of an unknown account answer empty;
    writes to one raise AccountNotFound.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    # ------------------------------------------------------------ accounts, atomically

    async def create_account(
        self,
        username: str,
        domain: str,
        credentials: Mapping[str, ScramKeys],
        secrets: LegacySecrets,
        fields: Mapping[str, str],
        *,
        invite: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Create the account with its keys, legacy secrets and fields, redeeming
        `invite` (a token) in the same transaction.

        Raises AccountExists when the name is taken by an account, held by a
        pending registration, or reserved by another usable invitation; raises
        InviteUnavailable when `invite` cannot be redeemed.
        """
        now = now or utcnow()
        try:
            async with self._writer.begin() as conn:
                await claim_name(conn, username, domain, invite, now)
                await AccountRepository._insert(conn, username, domain, credentials)
                account_id = await require_account_id(conn, (username, domain))
                await put_secrets(conn, account_id, secrets)
                await put_fields(conn, account_id, fields)
        except IntegrityError:
            raise AccountExists(username, domain) from None

    async def create_accounts(
        self, rows: Iterable[AccountWithSecrets], *, now: datetime | None = None
    ) -> tuple[list[str], list[str], list[str]]:
        """The bulk `create_account` (no fields, no invitation), BATCH_SIZE accounts
        per transaction, each account created with its keys and secrets at once.

        Returns (created, existing, held) as bare JIDs in input order: `held` names
        belong to a pending registration or are reserved by a usable invitation,
        as `create_account` refuses them.  A name repeated in `rows` is created once
        and reported as existing after that.
        """
        now = now or utcnow()
        created: list[str] = []
        existing: list[str] = []
        held: list[str] = []
        for batch in _batches(list(rows)):
            pairs = [(u, d) for u, d, _, _ in batch]
            async with self._writer.begin() as conn:
                await lock_names(conn, pairs)
                taken = set(await AccountRepository._ids(conn, pairs))
                reserved = await held_names(conn, pairs, now)
                fresh: list[AccountWithSecrets] = []
                for row in batch:
                    pair = (row[0], row[1])
                    if pair in taken:
                        existing.append(_jid(*pair))
                    elif pair in reserved:
                        held.append(_jid(*pair))
                    else:
                        taken.add(pair)
                        fresh.append(row)
                if not fresh:
                    continue
                await AccountRepository._insert_many(conn, [(u, d, c) for u, d, c, _ in fresh])
                ids = await AccountRepository._ids(conn, [(u, d) for u, d, _, _ in fresh])
                await put_secrets_many(conn, [(ids[(u, d)], c, s) for u, d, c, s in fresh])
                created.extend(_jid(u, d) for u, d, _, _ in fresh)
        return created, existing, held

    # ------------------------------------------------------------ registration fields

    async def fields(self, owner: Owner) -> dict[str, str]:
        username, domain = owner
        query = (
            select(RegistrationField.name, RegistrationField.value)
            .join(Account, Account.id == RegistrationField.account_id)
            .where(Account.username == username, Account.domain == domain)
            .order_by(RegistrationField.id)
        )
        async with self._engine.connect() as conn:
            return {name: value for name, value in (await conn.execute(query)).all()}

    async def set_fields(self, owner: Owner, fields: Mapping[str, str]) -> None:
        """Set the given fields (others are kept); an empty value removes a field.
        Raises AccountNotFound."""
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            await put_fields(conn, account_id, fields)


# ---------------------------------------------------------------- inside a transaction


async def claim_name(
    conn: AsyncConnection, username: str, domain: str, token: str | None, now: datetime
) -> None:
    """Inside a write transaction: refuse (AccountExists) a name held by an account, a
    pending registration or another usable invitation; redeem `token` if given
    (InviteUnavailable when it cannot be)."""
    await lock_names(conn, [(username, domain)])
    if await find_account_id(conn, (username, domain), lock=True) is not None:
        raise AccountExists(username, domain)
    held = await conn.execute(
        select(PendingRegistration.id).where(
            PendingRegistration.username == username, PendingRegistration.domain == domain
        )
    )
    if held.first() is not None:
        raise AccountExists(username, domain)
    await claim_invitation(conn, username, domain, token, now)


async def held_names(
    conn: AsyncConnection, accounts: Sequence[tuple[str, str]], now: datetime
) -> set[tuple[str, str]]:
    """The pairs a pending registration or a usable invitation holds (`claim_name`'s
    refusals besides an existing account, for many names at once)."""
    if not accounts:
        return set()
    pending = await conn.execute(
        select(PendingRegistration.username, PendingRegistration.domain).where(
            tuple_(PendingRegistration.username, PendingRegistration.domain).in_(accounts)
        )
    )
    held = {(u, d) for u, d in pending.all()}
    return held | await reserved_names(conn, accounts, now)


async def put_fields(conn: AsyncConnection, account_id: int, fields: Mapping[str, str]) -> None:
    """Inside a write transaction: set the given fields of the account (an empty value
    removes one; others are kept)."""
    if not fields:
        return
    await conn.execute(
        delete(RegistrationField).where(
            RegistrationField.account_id == account_id,
            RegistrationField.name.in_(list(fields)),
        )
    )
    rows = [
        {"account_id": account_id, "name": name, "value": value}
        for name, value in fields.items()
        if value
    ]
    if rows:
        await conn.execute(insert(RegistrationField), rows)


def _jid(username: str, domain: str) -> str:
    return f"{username}@{domain}"


def _batches(rows: Sequence, size: int = BATCH_SIZE) -> Iterable[Sequence]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
