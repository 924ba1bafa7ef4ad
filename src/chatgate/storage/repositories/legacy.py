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
no secret derived from an old password survives the change; and their bulk
forms for `chatgate user import`.

Callers hand in derived secrets only; passwords never reach this module (the
digest secret is the one exception the configuration can ask for, and says so).
Usernames are already PRECIS-enforced.  Nothing here reads the clock: expiry
checks take `now`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import delete, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatgate.auth.credentials import ScramKeys
from chatgate.storage.engine import writer
from chatgate.storage.errors import AccountExists
from chatgate.storage.models import (
    Account,
    LegacySecret,
    PendingRegistration,
    RegistrationField,
    RegistrationInvite,
    ScramCredential,
    utcnow,
)
from chatgate.storage.repositories.accounts import BATCH_SIZE, AccountRepository
from chatgate.storage.repositories.legacy_records import (
    AccountWithSecrets,
    DigestMd5Secret,
    Invite,
    InviteUnavailable,
    LegacySecrets,
    PendingAccount,
    StoredInvite,
    ZeroKnowledgeChain,
    binding_digest,
    from_pending_json,
    invite_hash,
    invite_usable,
    pending_json,
    secret_values,
    secrets_from_row,
)
from chatgate.storage.repositories.owner import Owner, find_account_id, require_account_id

__all__ = [
    "AccountWithSecrets",
    "DigestMd5Secret",
    "Invite",
    "InviteUnavailable",
    "LegacyRepository",
    "LegacySecrets",
    "PendingAccount",
    "StoredInvite",
    "ZeroKnowledgeChain",
    "invite_hash",
]


_SECRET_COLUMNS = (
    LegacySecret.digest_password,
    LegacySecret.digest_md5_realm,
    LegacySecret.digest_md5_ha1,
    LegacySecret.zk_token,
    LegacySecret.zk_sequence,
    LegacySecret.zk_hash,
)


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
        return secrets_from_row(row[2:])

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
                taken = set(await AccountRepository._ids(conn, pairs))
                reserved = await self._held(conn, pairs, now)
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
                await self._put_secrets_many(conn, [(ids[(u, d)], c, s) for u, d, c, s in fresh])
                created.extend(_jid(u, d) for u, d, _, _ in fresh)
        return created, existing, held

    async def change_passwords(
        self, rows: Iterable[AccountWithSecrets]
    ) -> tuple[list[str], list[str]]:
        """The bulk `change_password`, BATCH_SIZE accounts per transaction.  Returns
        (updated, missing) as bare JIDs; missing accounts are not created."""
        updated: list[str] = []
        missing: list[str] = []
        for batch in _batches(list(rows)):
            async with self._writer.begin() as conn:
                pairs = [(u, d) for u, d, _, _ in batch]
                ids = await AccountRepository._ids(conn, pairs, lock=True)
                found: list[tuple[int, Mapping[str, ScramKeys], LegacySecrets]] = []
                for username, domain, credentials, secrets in batch:
                    account_id = ids.get((username, domain))
                    if account_id is None:
                        missing.append(_jid(username, domain))
                        continue
                    await AccountRepository._replace_keys(conn, account_id, credentials)
                    found.append((account_id, credentials, secrets))
                    updated.append(_jid(username, domain))
                if found:
                    await conn.execute(
                        delete(LegacySecret).where(
                            LegacySecret.account_id.in_([i for i, _, _ in found])
                        )
                    )
                    await self._put_secrets_many(conn, found)
        return updated, missing

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

    async def approve(self, username: str, domain: str) -> bool:
        """Turn a pending registration into an account; False when there is none.
        Raises AccountExists (and keeps the registration pending) when an account
        of that name exists."""
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
        return invite if invite_usable(invite, now) else None

    async def invites(self, domain: str | None = None) -> list[StoredInvite]:
        """Every stored invitation, usable, used up or expired, oldest first."""
        query = select(
            RegistrationInvite.token_hash,
            RegistrationInvite.domain,
            RegistrationInvite.username,
            RegistrationInvite.uses_left,
            RegistrationInvite.expires,
            RegistrationInvite.created,
        ).order_by(RegistrationInvite.created, RegistrationInvite.token_hash)
        if domain is not None:
            query = query.where(RegistrationInvite.domain == domain)
        async with self._engine.connect() as conn:
            return [StoredInvite(*row) for row in (await conn.execute(query)).all()]

    async def revoke_invite(self, token: str) -> bool:
        """Delete the invitation with this token at once; False when it is unknown.
        A registration that presented it earlier in its stream fails (forbidden)."""
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(RegistrationInvite).where(
                    RegistrationInvite.token_hash == invite_hash(token)
                )
            )
            return result.rowcount > 0

    async def revoke_invite_hash(self, prefix: str) -> list[str]:
        """Delete the invitation whose token hash starts with `prefix` (lowercase hex,
        as `invites` shows it), when exactly one does.  Returns the matching hashes:
        none, the one deleted, or several (then nothing is deleted)."""
        if not prefix or any(c not in "0123456789abcdef" for c in prefix):
            return []
        async with self._writer.begin() as conn:
            rows = await conn.execute(
                select(RegistrationInvite.token_hash).where(
                    RegistrationInvite.token_hash.startswith(prefix)
                )
            )
            matches = [row[0] for row in rows.all()]
            if len(matches) == 1:
                await conn.execute(
                    delete(RegistrationInvite).where(RegistrationInvite.token_hash == matches[0])
                )
            return matches

    # ------------------------------------------------------------ internals

    @staticmethod
    async def _held(
        conn: AsyncConnection, accounts: Sequence[tuple[str, str]], now: datetime
    ) -> set[tuple[str, str]]:
        """The pairs a pending registration or a usable invitation holds (`_claim_name`'s
        refusals besides an existing account, for many names at once)."""
        if not accounts:
            return set()
        pending = await conn.execute(
            select(PendingRegistration.username, PendingRegistration.domain).where(
                tuple_(PendingRegistration.username, PendingRegistration.domain).in_(accounts)
            )
        )
        held = {(u, d) for u, d in pending.all()}
        invites = await conn.execute(
            select(RegistrationInvite.username, RegistrationInvite.domain).where(
                tuple_(RegistrationInvite.username, RegistrationInvite.domain).in_(accounts),
                RegistrationInvite.uses_left > 0,
                or_(RegistrationInvite.expires.is_(None), RegistrationInvite.expires > now),
            )
        )
        return held | {(u, d) for u, d in invites.all() if u is not None}

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
        for token_hash, invite_domain, invite_username, uses_left, expires in rows.all():
            other = Invite(invite_domain, invite_username, uses_left, expires)
            if token_hash != presented and invite_usable(other, now):
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
        if invite is None or invite.domain != domain or not invite_usable(invite, now):
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
        values = secret_values(secrets)
        if any(v is not None for v in values.values()):
            binding = await _binding(conn, account_id)
            await conn.execute(
                insert(LegacySecret).values(account_id=account_id, scram_binding=binding, **values)
            )

    @staticmethod
    async def _put_secrets_many(
        conn: AsyncConnection,
        rows: Sequence[tuple[int, Mapping[str, ScramKeys], LegacySecrets]],
    ) -> None:
        """Insert the secrets of accounts that have no row (new, or whose rows were just
        deleted), bound to `credentials`, which must be the keys stored now."""
        values = []
        for account_id, credentials, secrets in rows:
            columns = secret_values(secrets)
            if any(v is not None for v in columns.values()):
                salts = [(k.hash_name, k.salt) for k in credentials.values()]
                binding = binding_digest(salts)
                values.append({"account_id": account_id, "scram_binding": binding, **columns})
        if values:
            await conn.execute(insert(LegacySecret), values)

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
        select(ScramCredential.hash_name, ScramCredential.salt).where(
            ScramCredential.account_id == account_id
        )
    )
    return binding_digest(rows.all())


def _jid(username: str, domain: str) -> str:
    return f"{username}@{domain}"


def _batches(rows: Sequence, size: int = BATCH_SIZE) -> Iterable[Sequence]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
