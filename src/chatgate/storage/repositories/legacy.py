"""What in-band registration and legacy authentication keep beside an account.

This repository owns four tables (migration 0002):

* ``legacy_secrets``: the secrets only legacy methods need, one row per account,
  each column filled only when the configuration asks for it: the XEP-0078
  digest secret and DIGEST-MD5's H(user:realm:password), both plaintext-
  equivalent, and the XEP-0078 zero-knowledge hash chain (token, sequence, hash).
  The row is bound to the SCRAM salts of the password it came from, so a
  password changed by anything else makes it stale, and stale rows are ignored;
* ``registration_fields``: the XEP-0077 fields (name, email, ...) an account gave;
* ``pending_registrations``: registrations held for an administrator's approval;
* ``registration_invites``: invitation tokens (XEP-0401/0445), stored as SHA-256.

The writes that must be atomic with the account itself live here too: creating
an account with its SCRAM keys, secrets, fields and the invitation it redeems,
and a password change that replaces SCRAM keys and legacy secrets together, so
no secret derived from an old password survives the change.

Callers hand in derived secrets only; passwords never reach this module (the
digest secret is the one exception the configuration can ask for, and says so).
Usernames are already PRECIS-enforced.  Nothing here reads the clock: expiry
checks take `now`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatgate.auth.credentials import ScramKeys
from chatgate.storage.engine import writer
from chatgate.storage.errors import AccountExists, StorageError
from chatgate.storage.models import (
    Account,
    LegacySecret,
    PendingRegistration,
    RegistrationField,
    RegistrationInvite,
    ScramCredential,
    utcnow,
)
from chatgate.storage.repositories.accounts import AccountRepository
from chatgate.storage.repositories.owner import Owner, find_account_id, require_account_id

__all__ = [
    "DigestMd5Secret",
    "Invite",
    "InviteUnavailable",
    "LegacyRepository",
    "LegacySecrets",
    "PendingAccount",
    "ZeroKnowledgeChain",
    "invite_hash",
]


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class ZeroKnowledgeChain:
    """XEP-0078 (pre-2.0) / jabberd ``mod_auth_0k`` state: `hash` is SHA-1 applied
    `sequence` times to hash0 = SHA1(SHA1(password) + token), all in lowercase hex."""

    token: str
    sequence: int
    hash: str


@dataclass(frozen=True, slots=True)
class DigestMd5Secret:
    """RFC 2831 §2.1.2.1: H({ username-value, ":", realm-value, ":", passwd }) (16 bytes)."""

    realm: str
    ha1: bytes


@dataclass(frozen=True, slots=True)
class LegacySecrets:
    """The legacy secrets of one account; None where not stored."""

    digest_password: str | None = None
    digest_md5: DigestMd5Secret | None = None
    zero_knowledge: ZeroKnowledgeChain | None = None


@dataclass(frozen=True, slots=True)
class PendingAccount:
    """A registration waiting for approval (what an administrator sees)."""

    username: str
    domain: str
    fields: dict[str, str]
    address: str | None
    created: datetime


@dataclass(frozen=True, slots=True)
class Invite:
    """A usable invitation: `username` is the name it reserves, if any."""

    domain: str
    username: str | None
    uses_left: int
    expires: datetime | None


class InviteUnavailable(StorageError):
    """The invitation is unknown, used up or expired (it may have been used meanwhile)."""


def invite_hash(token: str) -> str:
    """How a token is stored and looked up: the hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- (de)serialization


def _secret_values(secrets: LegacySecrets) -> dict[str, Any]:
    md5, zk = secrets.digest_md5, secrets.zero_knowledge
    return {
        "digest_password": secrets.digest_password,
        "digest_md5_realm": None if md5 is None else md5.realm,
        "digest_md5_ha1": None if md5 is None else md5.ha1,
        "zk_token": None if zk is None else zk.token,
        "zk_sequence": None if zk is None else zk.sequence,
        "zk_hash": None if zk is None else zk.hash,
    }


def _secrets_from_row(row: Any) -> LegacySecrets:
    digest_password, realm, ha1, token, sequence, zk_hash = row
    md5 = None if realm is None or ha1 is None else DigestMd5Secret(realm, bytes(ha1))
    zk = None
    if token is not None and sequence is not None and zk_hash is not None:
        zk = ZeroKnowledgeChain(token, sequence, zk_hash)
    return LegacySecrets(digest_password, md5, zk)


_SECRET_COLUMNS = (
    LegacySecret.digest_password,
    LegacySecret.digest_md5_realm,
    LegacySecret.digest_md5_ha1,
    LegacySecret.zk_token,
    LegacySecret.zk_sequence,
    LegacySecret.zk_hash,
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _pending_json(credentials: Mapping[str, ScramKeys], secrets: LegacySecrets) -> str:
    values = _secret_values(secrets)
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


def _from_pending_json(text: str) -> tuple[dict[str, ScramKeys], LegacySecrets]:
    data = json.loads(text)
    credentials = {
        name: ScramKeys(
            name,
            base64.b64decode(k["salt"]),
            int(k["iterations"]),
            base64.b64decode(k["stored_key"]),
            base64.b64decode(k["server_key"]),
        )
        for name, k in data["scram"].items()
    }
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
    return credentials, _secrets_from_row(row)


# ---------------------------------------------------------------- repository


class LegacyRepository:
    """Legacy secrets, registration fields, pending registrations and invitations.

    Every method is one transaction.  Reads of an unknown account answer empty;
    writes to one raise AccountNotFound.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    # ------------------------------------------------------------ legacy secrets

    async def secrets(self, owner: Owner) -> LegacySecrets | None:
        """The stored legacy secrets, or None when the account has none (or is unknown).

        Secrets stored for an earlier password (one set since by a tool that does
        not know about them, such as the CLI) are not returned: the SCRAM salts they
        were bound to have changed.
        """
        username, domain = owner
        query = (
            select(LegacySecret.account_id, LegacySecret.scram_binding, *_SECRET_COLUMNS)
            .join(Account, Account.id == LegacySecret.account_id)
            .where(Account.username == username, Account.domain == domain)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
            if row is None:
                return None
            if row[1] != await _binding(conn, row[0]):
                return None
        return _secrets_from_row(row[2:])

    async def set_secrets(self, owner: Owner, secrets: LegacySecrets) -> None:
        """Replace every legacy secret of the account.  Raises AccountNotFound."""
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            await self._put_secrets(conn, account_id, secrets)

    async def advance_chain(
        self, owner: Owner, expected: ZeroKnowledgeChain, new: ZeroKnowledgeChain
    ) -> bool:
        """Compare-and-set the zero-knowledge chain: False when it is no longer
        `expected` (a concurrent login used it, or a password change reset it)."""
        async with self._writer.begin() as conn:
            account_id = await find_account_id(conn, owner, lock=True)
            if account_id is None:
                return False
            result = await conn.execute(
                update(LegacySecret)
                .where(
                    LegacySecret.account_id == account_id,
                    LegacySecret.zk_token == expected.token,
                    LegacySecret.zk_sequence == expected.sequence,
                    LegacySecret.zk_hash == expected.hash,
                )
                .values(zk_token=new.token, zk_sequence=new.sequence, zk_hash=new.hash)
            )
            return result.rowcount == 1

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
                await self._claim_name(conn, username, domain, invite, now)
                await AccountRepository._insert(conn, username, domain, credentials)
                account_id = await require_account_id(conn, (username, domain))
                await self._put_secrets(conn, account_id, secrets)
                await self._put_fields(conn, account_id, fields)
        except IntegrityError:
            raise AccountExists(username, domain) from None

    async def change_password(
        self, owner: Owner, credentials: Mapping[str, ScramKeys], secrets: LegacySecrets
    ) -> None:
        """Replace the SCRAM keys and every legacy secret together (a password
        change: nothing derived from the old password survives).  Raises AccountNotFound."""
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            await AccountRepository._replace_keys(conn, account_id, credentials)
            await self._put_secrets(conn, account_id, secrets)

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
            await self._put_fields(conn, account_id, fields)

    # ------------------------------------------------------------ pending registrations

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
        Raises AccountExists or InviteUnavailable, as `create_account`."""
        now = now or utcnow()
        try:
            async with self._writer.begin() as conn:
                await self._claim_name(conn, username, domain, invite, now)
                await conn.execute(
                    insert(PendingRegistration).values(
                        username=username,
                        domain=domain,
                        secrets=_pending_json(credentials, secrets),
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

    async def approve(self, username: str, domain: str) -> bool:
        """Turn a pending registration into an account; False when there is none."""
        async with self._writer.begin() as conn:
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
            credentials, secrets = _from_pending_json(row[0])
            await conn.execute(
                delete(PendingRegistration).where(
                    PendingRegistration.username == username, PendingRegistration.domain == domain
                )
            )
            await AccountRepository._insert(conn, username, domain, credentials)
            account_id = await require_account_id(conn, (username, domain))
            await self._put_secrets(conn, account_id, secrets)
            await self._put_fields(conn, account_id, json.loads(row[1]))
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

    # ------------------------------------------------------------ invitations

    async def add_invite(
        self,
        token: str,
        domain: str,
        *,
        username: str | None = None,
        uses: int = 1,
        expires: datetime | None = None,
    ) -> bool:
        """Store an invitation; False (and nothing changed) when the token exists."""
        if uses < 1:
            raise ValueError("an invitation needs at least one use")
        try:
            async with self._writer.begin() as conn:
                await conn.execute(
                    insert(RegistrationInvite).values(
                        token_hash=invite_hash(token),
                        domain=domain,
                        username=username,
                        uses_left=uses,
                        expires=expires,
                        created=utcnow(),
                    )
                )
        except IntegrityError:
            return False
        return True

    async def invite(self, token: str, domain: str, now: datetime) -> Invite | None:
        """The invitation if it can be redeemed now (known, uses left, not expired)."""
        query = select(
            RegistrationInvite.domain,
            RegistrationInvite.username,
            RegistrationInvite.uses_left,
            RegistrationInvite.expires,
        ).where(
            RegistrationInvite.token_hash == invite_hash(token),
            RegistrationInvite.domain == domain,
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None:
            return None
        invite = Invite(*row)
        return invite if _usable(invite, now) else None

    # ------------------------------------------------------------ internals

    async def _claim_name(
        self,
        conn: AsyncConnection,
        username: str,
        domain: str,
        token: str | None,
        now: datetime,
    ) -> None:
        """Inside a write transaction: refuse a name held by an account, a pending
        registration or another usable invitation; redeem `token` if given."""
        if await find_account_id(conn, (username, domain), lock=True) is not None:
            raise AccountExists(username, domain)
        held = await conn.execute(
            select(PendingRegistration.id).where(
                PendingRegistration.username == username, PendingRegistration.domain == domain
            )
        )
        if held.first() is not None:
            raise AccountExists(username, domain)
        presented = None if token is None else invite_hash(token)
        rows = await conn.execute(
            select(
                RegistrationInvite.token_hash,
                RegistrationInvite.domain,
                RegistrationInvite.username,
                RegistrationInvite.uses_left,
                RegistrationInvite.expires,
            ).where(
                RegistrationInvite.domain == domain,
                RegistrationInvite.username == username,
            )
        )
        for token_hash, *fields in rows.all():
            if token_hash != presented and _usable(Invite(*fields), now):
                raise AccountExists(username, domain)
        if presented is None:
            return
        row = (
            await conn.execute(
                select(
                    RegistrationInvite.domain,
                    RegistrationInvite.username,
                    RegistrationInvite.uses_left,
                    RegistrationInvite.expires,
                ).where(RegistrationInvite.token_hash == presented)
            )
        ).one_or_none()
        invite = None if row is None else Invite(*row)
        if invite is None or invite.domain != domain or not _usable(invite, now):
            raise InviteUnavailable("the invitation is unknown, used up or expired")
        if invite.username is not None and invite.username != username:
            raise InviteUnavailable(f"the invitation is for {invite.username!r}")
        await conn.execute(
            update(RegistrationInvite)
            .where(RegistrationInvite.token_hash == presented)
            .values(uses_left=RegistrationInvite.uses_left - 1)
        )

    @staticmethod
    async def _put_secrets(conn: AsyncConnection, account_id: int, secrets: LegacySecrets) -> None:
        """Replace the row, bound to the SCRAM keys stored now (write those first)."""
        await conn.execute(delete(LegacySecret).where(LegacySecret.account_id == account_id))
        values = _secret_values(secrets)
        if any(v is not None for v in values.values()):
            binding = await _binding(conn, account_id)
            await conn.execute(
                insert(LegacySecret).values(account_id=account_id, scram_binding=binding, **values)
            )

    @staticmethod
    async def _put_fields(
        conn: AsyncConnection, account_id: int, fields: Mapping[str, str]
    ) -> None:
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


async def _binding(conn: AsyncConnection, account_id: int) -> str:
    """SHA-256 over the account's SCRAM salts: every password set draws new salts."""
    rows = await conn.execute(
        select(ScramCredential.hash_name, ScramCredential.salt)
        .where(ScramCredential.account_id == account_id)
        .order_by(ScramCredential.hash_name)
    )
    digest = hashlib.sha256()
    for hash_name, salt in rows.all():
        digest.update(f"{hash_name}:{len(salt)}:".encode() + bytes(salt))
    return digest.hexdigest()


def _usable(invite: Invite, now: datetime) -> bool:
    return invite.uses_left > 0 and (invite.expires is None or invite.expires > now)
