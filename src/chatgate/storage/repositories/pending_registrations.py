"""Registrations held for an administrator's approval.

This repository owns the ``pending_registrations`` table (migration 0002).  A
pending registration keeps what the account will be created with (SCRAM keys
and legacy secrets, as JSON, and the XEP-0077 fields) and holds its name from
the moment it is made (`registration.claim_name`).  Approving it creates the
account in the same transaction that deletes it (`approve`), so a name is
never free in between and an approved registration never half exists.  The
credential provider reads the names (`pending_names`) and, for a login with such
a name, the keys (`held_scram_keys`), to tell a client that proves the password
that its registration awaits approval.

Callers hand in derived secrets only; passwords never reach this module.
Nothing here reads the clock: times are passed in.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.auth.credentials import ScramKeys
from chatgate.storage.engine import writer
from chatgate.storage.errors import AccountExists
from chatgate.storage.models import PendingRegistration, utcnow
from chatgate.storage.repositories.accounts import AccountRepository
from chatgate.storage.repositories.legacy import put_secrets
from chatgate.storage.repositories.legacy_records import (
    LegacySecrets,
    secret_values,
    secrets_from_row,
)
from chatgate.storage.repositories.owner import find_account_id, lock_names, require_account_id
from chatgate.storage.repositories.registration import claim_name, put_fields

__all__ = [
    "PendingAccount",
    "PendingRegistrationRepository",
    "from_pending_json",
    "pending_json",
]


@dataclass(frozen=True, slots=True)
class PendingAccount:
    """A registration waiting for approval (what an administrator sees)."""

    username: str
    domain: str
    fields: dict[str, str]
    address: str | None
    created: datetime


class PendingRegistrationRepository:
    """Hold, list, approve and reject registrations.  Every method is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def create_pending(
        self,
        username: str,
        domain: str,
        credentials: Mapping[str, ScramKeys],
        secrets: LegacySecrets,
        fields: Mapping[str, str],
        *,
        address: str | None = None,
        invite: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Hold a registration for approval; the name is taken from now on.
        Raises AccountExists or InviteUnavailable, as
        `RegistrationRepository.create_account`."""
        now = now or utcnow()
        try:
            async with self._writer.begin() as conn:
                await claim_name(conn, username, domain, invite, now)
                await conn.execute(
                    insert(PendingRegistration).values(
                        username=username,
                        domain=domain,
                        secrets=pending_json(credentials, secrets),
                        fields=json.dumps(dict(fields)),
                        address=address,
                        created=now,
                    )
                )
        except IntegrityError:
            raise AccountExists(username, domain) from None

    async def pending(self, domain: str | None = None) -> list[PendingAccount]:
        """Registrations waiting for approval, oldest first."""
        query = select(
            PendingRegistration.username,
            PendingRegistration.domain,
            PendingRegistration.fields,
            PendingRegistration.address,
            PendingRegistration.created,
        ).order_by(PendingRegistration.id)
        if domain is not None:
            query = query.where(PendingRegistration.domain == domain)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [PendingAccount(u, d, json.loads(f), a, c) for u, d, f, a, c in rows]

    async def held_scram_keys(self, username: str, domain: str) -> dict[str, ScramKeys] | None:
        """The SCRAM keys a pending registration will log in with once approved (keyed by
        hashlib name); None when none of that name is pending.  The credential provider
        checks a login against them only to tell a client that proves the password
        that the registration awaits approval (`auth/internal.py`)."""
        async with self._engine.connect() as conn:
            text = (
                await conn.execute(
                    select(PendingRegistration.secrets).where(
                        PendingRegistration.username == username,
                        PendingRegistration.domain == domain,
                    )
                )
            ).scalar_one_or_none()
        return None if text is None else _scram_from_json(json.loads(text)["scram"])

    async def pending_names(self, limit: int) -> set[tuple[str, str]]:
        """The (username, domain) of at most `limit` registrations awaiting approval,
        oldest first: what the credential provider keeps in memory."""
        query = (
            select(PendingRegistration.username, PendingRegistration.domain)
            .order_by(PendingRegistration.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return {(u, d) for u, d in (await conn.execute(query)).all()}

    async def approve(self, username: str, domain: str) -> bool:
        """Turn a pending registration into an account, in one transaction; False when
        there is none.  Raises AccountExists (and keeps the registration pending) when
        an account of that name exists."""
        async with self._writer.begin() as conn:
            # two approvals of one name take turns: the second finds it gone
            await lock_names(conn, [(username, domain)])
            row = (
                await conn.execute(
                    select(PendingRegistration.secrets, PendingRegistration.fields).where(
                        PendingRegistration.username == username,
                        PendingRegistration.domain == domain,
                    )
                )
            ).one_or_none()
            if row is None:
                return False
            credentials, secrets = from_pending_json(row[0])
            await conn.execute(
                delete(PendingRegistration).where(
                    PendingRegistration.username == username, PendingRegistration.domain == domain
                )
            )
            if await find_account_id(conn, (username, domain), lock=True) is not None:
                # Only a tool that ignores pending names can have made it (an old CLI).
                raise AccountExists(username, domain)
            await AccountRepository._insert(conn, username, domain, credentials)
            account_id = await require_account_id(conn, (username, domain))
            await put_secrets(conn, account_id, secrets)
            await put_fields(conn, account_id, json.loads(row[1]))
            return True

    async def reject(self, username: str, domain: str) -> bool:
        """Drop a pending registration (the name is free again); False when there is none."""
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(PendingRegistration).where(
                    PendingRegistration.username == username, PendingRegistration.domain == domain
                )
            )
            return result.rowcount > 0


# ---------------------------------------------------------------- (de)serialization


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pending_json(credentials: Mapping[str, ScramKeys], secrets: LegacySecrets) -> str:
    """What a pending registration keeps until approval: its keys and legacy secrets."""
    values = secret_values(secrets)
    if values["digest_md5_ha1"] is not None:
        values["digest_md5_ha1"] = _b64(values["digest_md5_ha1"])
    return json.dumps(
        {
            "scram": {
                name: {
                    "salt": _b64(k.salt),
                    "iterations": k.iterations,
                    "stored_key": _b64(k.stored_key),
                    "server_key": _b64(k.server_key),
                }
                for name, k in credentials.items()
            },
            "legacy": values,
        }
    )


def _scram_from_json(scram: Mapping[str, Mapping[str, str | int]]) -> dict[str, ScramKeys]:
    return {
        name: ScramKeys(
            name,
            base64.b64decode(str(k["salt"])),
            int(k["iterations"]),
            base64.b64decode(str(k["stored_key"])),
            base64.b64decode(str(k["server_key"])),
        )
        for name, k in scram.items()
    }


def from_pending_json(text: str) -> tuple[dict[str, ScramKeys], LegacySecrets]:
    data = json.loads(text)
    credentials = _scram_from_json(data["scram"])
    legacy = data["legacy"]
    ha1 = legacy["digest_md5_ha1"]
    row = (
        legacy["digest_password"],
        legacy["digest_md5_realm"],
        None if ha1 is None else base64.b64decode(ha1),
        legacy["zk_token"],
        legacy["zk_sequence"],
        legacy["zk_hash"],
    )
    return credentials, secrets_from_row(row)
