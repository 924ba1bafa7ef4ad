"""The secrets only legacy authentication needs, and the password changes that replace them.

This repository owns the ``legacy_secrets`` table (migration 0002): one row per
account, each column filled only when the configuration asks for it: the
XEP-0078 digest secret and DIGEST-MD5's H(user:realm:password), both
plaintext-equivalent, and the XEP-0078 zero-knowledge hash chain (token,
sequence, hash).  The row is bound to the SCRAM salts of the password it came
from, so a password changed by anything else makes it stale, and stale rows
are ignored.

A password change replaces SCRAM keys and legacy secrets in one transaction
(`change_password`, and `change_passwords` for `chatgate user import`), so no
secret derived from an old password survives the change.  `put_secrets` and
`put_secrets_many` write the row inside a transaction another repository
opened: creating an account (`registration.py`) and approving a pending
registration (`pending_registrations.py`) store it with the account.

Callers hand in derived secrets only; passwords never reach this module (the
digest secret is the one exception the configuration can ask for, and says so).
Usernames are already PRECIS-enforced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatgate.auth.credentials import ScramKeys
from chatgate.storage.engine import writer
from chatgate.storage.models import Account, LegacySecret, ScramCredential
from chatgate.storage.repositories.accounts import BATCH_SIZE, AccountRepository
from chatgate.storage.repositories.legacy_records import (
    AccountWithSecrets,
    DigestMd5Secret,
    LegacySecrets,
    ZeroKnowledgeChain,
    binding_digest,
    secret_values,
    secrets_from_row,
)
from chatgate.storage.repositories.owner import Owner, find_account_id, require_account_id

__all__ = [
    "AccountWithSecrets",
    "DigestMd5Secret",
    "LegacyRepository",
    "LegacySecrets",
    "ZeroKnowledgeChain",
    "put_secrets",
    "put_secrets_many",
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
    """Legacy secrets, and password changes that replace them with the SCRAM keys.

    Every method is one transaction.  Reads of an unknown account answer empty;
    writes to one raise AccountNotFound.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    # ------------------------------------------------------------ legacy secrets

    async def secrets(self, owner: Owner) -> LegacySecrets | None:
        """The stored legacy secrets, or None when the account has none (or is unknown,
        or locked).

        Secrets stored for an earlier password (one set since by a tool that does
        not know about them, such as the CLI) are not returned: the SCRAM salts they
        were bound to have changed.
        """
        username, domain = owner
        query = (
            select(LegacySecret.account_id, LegacySecret.scram_binding, *_SECRET_COLUMNS)
            .join(Account, Account.id == LegacySecret.account_id)
            # a locked account has no secrets to log in with (`chatgate user lock`)
            .where(
                Account.username == username,
                Account.domain == domain,
                Account.locked.is_(False),
            )
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
            await put_secrets(conn, account_id, secrets)

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

    # ------------------------------------------------------------ password changes

    async def change_password(
        self, owner: Owner, credentials: Mapping[str, ScramKeys], secrets: LegacySecrets
    ) -> None:
        """Replace the SCRAM keys and every legacy secret together (a password
        change: nothing derived from the old password survives).  Raises AccountNotFound."""
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            await AccountRepository._replace_keys(conn, account_id, credentials)
            await put_secrets(conn, account_id, secrets)

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
                    await put_secrets_many(conn, found)
        return updated, missing


# ---------------------------------------------------------------- inside a transaction


async def put_secrets(conn: AsyncConnection, account_id: int, secrets: LegacySecrets) -> None:
    """Inside a write transaction: replace the account's row, bound to the SCRAM keys
    stored now (write those first)."""
    await conn.execute(delete(LegacySecret).where(LegacySecret.account_id == account_id))
    values = secret_values(secrets)
    if any(v is not None for v in values.values()):
        binding = await _binding(conn, account_id)
        await conn.execute(
            insert(LegacySecret).values(account_id=account_id, scram_binding=binding, **values)
        )


async def put_secrets_many(
    conn: AsyncConnection,
    rows: Sequence[tuple[int, Mapping[str, ScramKeys], LegacySecrets]],
) -> None:
    """Inside a write transaction: insert the secrets of accounts that have no row (new,
    or whose rows were just deleted), bound to `credentials`, which must be the keys
    stored now."""
    values = []
    for account_id, credentials, secrets in rows:
        columns = secret_values(secrets)
        if any(v is not None for v in columns.values()):
            salts = [(k.hash_name, k.salt) for k in credentials.values()]
            binding = binding_digest(salts)
            values.append({"account_id": account_id, "scram_binding": binding, **columns})
    if values:
        await conn.execute(insert(LegacySecret), values)


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
