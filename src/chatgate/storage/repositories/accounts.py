"""Accounts and their SCRAM credentials: the aggregate the credential providers read.

Passwords never reach this module: callers hand in `ScramKeys` derived with
`chatgate.auth.credentials`.  Usernames are already PRECIS-enforced.

An account may be *locked* (migration 0007): it keeps everything it owns, and the
reads meant for logins (`login_keys`, `scram_keys_of_many`) say so, so that the
credential provider refuses it; the other reads (`all_scram_keys`, `exists`)
answer as for any account.  Who holds a name (`name_holder`: an account, a
registration awaiting approval, a usable invitation) is the read twin of
`registration.claim_name`, which refuses such a name inside the transaction that
would take it.  Nothing here reads the clock.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatgate.auth.credentials import ScramKeys
from chatgate.storage.engine import writer
from chatgate.storage.errors import AccountExists, AccountNotFound
from chatgate.storage.models import (
    Account,
    PendingRegistration,
    RosterVersion,
    ScramCredential,
    utcnow,
)
from chatgate.storage.records import AccountSummary
from chatgate.storage.repositories.invitations import reserved_names
from chatgate.storage.repositories.owner import find_account_id, lock_names

#: one account to create or update in bulk: (username, domain, {hash_name: keys})
AccountRow = tuple[str, str, Mapping[str, ScramKeys]]

#: accounts per transaction in the bulk paths, and names per IN (...) lookup
BATCH_SIZE = 500

_Owner = tuple[str, str]


class NameHolder(enum.Enum):
    """What keeps a name from a new account, in the order `name_holder` looks."""

    ACCOUNT = "account"
    PENDING = "pending registration"  # a registration awaiting approval
    INVITATION = "invitation"  # a usable invitation made for that name


class LoadedKeys(NamedTuple):
    """`scram_keys_of_many`'s answer: the keys of the accounts that may log in, whether
    that was every account, and the locked accounts among those read (no keys)."""

    keys: dict[_Owner, dict[str, ScramKeys]]
    complete: bool
    locked: set[_Owner]


def _jid(username: str, domain: str) -> str:
    return f"{username}@{domain}"


def _credential_rows(account_id: int, credentials: Mapping[str, ScramKeys]) -> list[dict]:
    rows = []
    for hash_name, keys in credentials.items():
        if hash_name != keys.hash_name:
            raise ValueError(f"credentials key {hash_name!r} holds {keys.hash_name} keys")
        rows.append(
            {
                "account_id": account_id,
                "hash_name": keys.hash_name,
                "salt": keys.salt,
                "iterations": keys.iterations,
                "stored_key": keys.stored_key,
                "server_key": keys.server_key,
            }
        )
    return rows


def _keys(row: Sequence[Any]) -> ScramKeys:
    """Keys from a (hash_name, salt, iterations, stored_key, server_key) row."""
    hash_name, salt, iterations, stored_key, server_key = row
    return ScramKeys(hash_name, bytes(salt), iterations, bytes(stored_key), bytes(server_key))


_KEY_COLUMNS = (
    ScramCredential.hash_name,
    ScramCredential.salt,
    ScramCredential.iterations,
    ScramCredential.stored_key,
    ScramCredential.server_key,
)


def _batches(rows: Sequence, size: int = BATCH_SIZE) -> Iterable[Sequence]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class AccountRepository:
    """Accounts and SCRAM credentials.  Every method is one transaction (bulk: one per batch)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    # ------------------------------------------------------------------ writes

    async def create(
        self,
        username: str,
        domain: str,
        credentials: Mapping[str, ScramKeys],
        *,
        anonymous: bool = False,
    ) -> None:
        """Create username@domain with its SCRAM keys (`anonymous`: an identity made
        by an ANONYMOUS login, see `delete_anonymous`).  Raises AccountExists."""
        try:
            async with self._writer.begin() as conn:
                await self._insert(conn, username, domain, credentials, anonymous=anonymous)
        except IntegrityError:
            raise AccountExists(username, domain) from None

    async def set_credentials(
        self, username: str, domain: str, credentials: Mapping[str, ScramKeys]
    ) -> None:
        """Replace every stored SCRAM key of the account (a password change).

        Hashes absent from `credentials` are removed, so no key of the old
        password survives.  Raises AccountNotFound.
        """
        async with self._writer.begin() as conn:
            account_id = await find_account_id(conn, (username, domain), lock=True)
            if account_id is None:
                raise AccountNotFound(username, domain)
            await self._replace_keys(conn, account_id, credentials)

    async def delete(self, username: str, domain: str) -> bool:
        """Delete the account and, by cascade, everything it owns.  False when absent."""
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(Account).where(Account.username == username, Account.domain == domain)
            )
            return result.rowcount > 0

    async def set_locked(self, username: str, domain: str, locked: bool) -> bool:
        """Lock or unlock the account; True when that changed its state, False when it
        already was so.  Raises AccountNotFound."""
        async with self._writer.begin() as conn:
            account_id = await find_account_id(conn, (username, domain), lock=True)
            if account_id is None:
                raise AccountNotFound(username, domain)
            result = await conn.execute(
                update(Account)
                .where(Account.id == account_id, Account.locked.is_(not locked))
                .values(locked=locked)
            )
            return result.rowcount > 0

    async def delete_anonymous(
        self, domain: str, username: str | None = None, *, keep: Collection[str] = ()
    ) -> int:
        """Delete the identities ANONYMOUS logins made on `domain` (only that one when
        `username` is given; never those named in `keep`: live on other cluster
        nodes) and, by cascade, all they own; accounts made any other way are never
        touched.  Returns how many went."""
        query = delete(Account).where(Account.domain == domain, Account.anonymous.is_(True))
        if username is not None:
            query = query.where(Account.username == username)
        if keep:
            query = query.where(Account.username.not_in(sorted(keep)))
        async with self._writer.begin() as conn:
            return (await conn.execute(query)).rowcount

    async def create_many(
        self, rows: Iterable[AccountRow]
    ) -> tuple[builtins.list[str], builtins.list[str]]:
        """Create many accounts, BATCH_SIZE per transaction; existing ones are left alone.

        Returns (created, skipped_existing) as bare JIDs ``username@domain``,
        in input order.  A username repeated in `rows` is created once and
        reported as skipped after that.
        """
        created: list[str] = []
        skipped: list[str] = []
        pending = list(rows)
        for batch in _batches(pending):
            async with self._writer.begin() as conn:
                await lock_names(conn, [(u, d) for u, d, _ in batch])
                existing = await self._existing(conn, [(u, d) for u, d, _ in batch])
                fresh: list[AccountRow] = []
                for username, domain, credentials in batch:
                    if (username, domain) in existing:
                        skipped.append(_jid(username, domain))
                    else:
                        existing.add((username, domain))
                        fresh.append((username, domain, credentials))
                if fresh:
                    await self._insert_many(conn, fresh)
                created.extend(_jid(u, d) for u, d, _ in fresh)
        return created, skipped

    async def set_credentials_many(
        self, rows: Iterable[AccountRow]
    ) -> tuple[builtins.list[str], builtins.list[str]]:
        """Replace the keys of many accounts, BATCH_SIZE per transaction.

        Returns (updated, missing) as bare JIDs; missing accounts are not created.
        """
        updated: list[str] = []
        missing: list[str] = []
        for batch in _batches(list(rows)):
            async with self._writer.begin() as conn:
                ids = await self._ids(conn, [(u, d) for u, d, _ in batch], lock=True)
                for username, domain, credentials in batch:
                    account_id = ids.get((username, domain))
                    if account_id is None:
                        missing.append(_jid(username, domain))
                        continue
                    await self._replace_keys(conn, account_id, credentials)
                    updated.append(_jid(username, domain))
        return updated, missing

    # ------------------------------------------------------------------- reads

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> ScramKeys | None:
        """The account's SCRAM keys for one hash, or None (unknown user or hash)."""
        query = (
            select(*_KEY_COLUMNS)
            .join(Account, Account.id == ScramCredential.account_id)
            .where(
                Account.username == username,
                Account.domain == domain,
                ScramCredential.hash_name == hash_name,
            )
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else _keys(row)

    async def login_keys(self, username: str, domain: str) -> tuple[dict[str, ScramKeys], bool]:
        """`all_scram_keys` and whether the account is locked, in one read: what a login
        needs (an account without keys answers ({}, False), as an unknown one)."""
        query = (
            select(Account.locked, *_KEY_COLUMNS)
            .join(Account, Account.id == ScramCredential.account_id)
            .where(Account.username == username, Account.domain == domain)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {row[1]: _keys(row[1:]) for row in rows}, bool(rows and rows[0][0])

    async def all_scram_keys(self, username: str, domain: str) -> dict[str, ScramKeys]:
        """Every stored hash's SCRAM keys, keyed by hashlib name; empty for an unknown user.
        A locked account's too: logins read `login_keys`."""
        query = (
            select(*_KEY_COLUMNS)
            .join(Account, Account.id == ScramCredential.account_id)
            .where(Account.username == username, Account.domain == domain)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {row[0]: _keys(row) for row in rows}

    async def scram_keys_of_many(self, limit: int) -> LoadedKeys:
        """The SCRAM keys of up to `limit` accounts, newest first, in one transaction:
        what a credential cache loads at start so that logins need no database round
        trip.  `complete` says whether that was every account (then an account missing
        from `keys` has no SCRAM keys, or is one of the `locked` ones, whose keys are
        not read: they must not log in)."""
        newest = select(Account.id).order_by(Account.id.desc()).limit(limit).subquery()
        query = (
            select(Account.username, Account.domain, *_KEY_COLUMNS)
            .join(Account, Account.id == ScramCredential.account_id)
            .where(Account.id.in_(select(newest.c.id)), Account.locked.is_(False))
        )
        locked_query = select(Account.username, Account.domain).where(
            Account.id.in_(select(newest.c.id)), Account.locked.is_(True)
        )
        found: dict[tuple[str, str], dict[str, ScramKeys]] = {}
        async with self._engine.connect() as conn, conn.begin():
            for row in (await conn.execute(query)).all():
                found.setdefault((row[0], row[1]), {})[row[2]] = _keys(row[2:])
            locked = {(u, d) for u, d in (await conn.execute(locked_query)).all()}
            beyond = select(Account.id).order_by(Account.id.desc()).offset(limit).limit(1)
            complete = (await conn.execute(beyond)).first() is None
        return LoadedKeys(found, complete, locked)

    async def exists(self, username: str, domain: str) -> bool:
        """Whether the account exists, locked or not."""
        async with self._engine.connect() as conn:
            return await find_account_id(conn, (username, domain)) is not None

    async def locked(self, username: str, domain: str) -> bool | None:
        """Whether the account is locked; None when there is no such account."""
        query = select(Account.locked).where(Account.username == username, Account.domain == domain)
        async with self._engine.connect() as conn:
            value = (await conn.execute(query)).scalar_one_or_none()
        return None if value is None else bool(value)

    async def locked_accounts(self, domain: str | None = None) -> set[tuple[str, str]]:
        """(username, domain) of every locked account (of `domain`)."""
        query = select(Account.username, Account.domain).where(Account.locked.is_(True))
        if domain is not None:
            query = query.where(Account.domain == domain)
        async with self._engine.connect() as conn:
            return {(u, d) for u, d in (await conn.execute(query)).all()}

    async def name_holder(self, username: str, domain: str, now: datetime) -> NameHolder | None:
        """What keeps username@domain from a new account, or None when it is free: an
        account (locked or not), a registration awaiting approval, or an invitation
        made for that name that is usable at `now`.  One read transaction; the
        write that takes a name checks again (`registration.claim_name`)."""
        owner = (username, domain)
        async with self._engine.connect() as conn, conn.begin():
            if await find_account_id(conn, owner) is not None:
                return NameHolder.ACCOUNT
            held = await conn.execute(
                select(PendingRegistration.id).where(
                    PendingRegistration.username == username,
                    PendingRegistration.domain == domain,
                )
            )
            if held.first() is not None:
                return NameHolder.PENDING
            if await reserved_names(conn, [owner], now):
                return NameHolder.INVITATION
        return None

    async def existing(self, accounts: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (username, domain) pairs have an account (for bulk imports)."""
        found: set[tuple[str, str]] = set()
        async with self._engine.connect() as conn:
            for batch in _batches(list(accounts)):
                found |= await self._existing(conn, batch)
        return found

    async def standing(
        self, accounts: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[bool, datetime]]:
        """Which of these (username, domain) pairs have an account: whether each is
        locked, and when it was created (absent: no such account)."""
        found: dict[tuple[str, str], tuple[bool, datetime]] = {}
        async with self._engine.connect() as conn:
            for batch in _batches(builtins.list(accounts)):
                query = select(
                    Account.username, Account.domain, Account.locked, Account.created
                ).where(tuple_(Account.username, Account.domain).in_(batch))
                for username, domain, locked, created in (await conn.execute(query)).all():
                    found[(username, domain)] = (bool(locked), created)
        return found

    async def list(self, domain: str | None = None) -> builtins.list[AccountSummary]:
        """Accounts ordered by domain then username, optionally of one domain."""
        query = select(Account.username, Account.domain, Account.created).order_by(
            Account.domain, Account.username
        )
        if domain is not None:
            query = query.where(Account.domain == domain)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [AccountSummary(username, dom, created) for username, dom, created in rows]

    async def page(
        self,
        *,
        domain: str | None = None,
        search: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int = 50,
    ) -> builtins.list[tuple[str, str, datetime, bool]]:
        """(username, domain, created, locked) by domain then username, after the
        (domain, username) key `after`: keyset paging in SQL, for the admin API.
        `search` keeps usernames containing it, or whole JIDs when it has an '@'."""
        query = (
            select(Account.username, Account.domain, Account.created, Account.locked)
            .order_by(Account.domain, Account.username)
            .limit(limit)
        )
        query = _matching(query, domain, search)
        if after is not None:
            query = query.where(tuple_(Account.domain, Account.username) > tuple_(*after))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(u, d, created, bool(locked)) for u, d, created, locked in rows]

    async def summary(self, username: str, domain: str) -> tuple[datetime, bool] | None:
        """(created, locked) of one account; None when there is none."""
        query = select(Account.created, Account.locked).where(
            Account.username == username, Account.domain == domain
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else (row[0], bool(row[1]))

    async def count_matching(self, *, domain: str | None = None, search: str | None = None) -> int:
        """How many accounts `page` would go through with these filters."""
        query = _matching(select(func.count()).select_from(Account), domain, search)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def count(self, domain: str | None = None, *, anonymous: bool | None = None) -> int:
        """How many accounts (of `domain`; only those made by ANONYMOUS logins, or only
        the others, when `anonymous` says which)."""
        query = select(func.count()).select_from(Account)
        if domain is not None:
            query = query.where(Account.domain == domain)
        if anonymous is not None:
            query = query.where(Account.anonymous.is_(anonymous))
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()

    # ---------------------------------------------------------------- internals

    @staticmethod
    async def _insert(
        conn: AsyncConnection,
        username: str,
        domain: str,
        credentials: Mapping[str, ScramKeys],
        *,
        anonymous: bool = False,
    ) -> None:
        row = {"username": username, "domain": domain, "created": utcnow()}
        result = await conn.execute(insert(Account).values(**row, anonymous=anonymous))
        key = result.inserted_primary_key
        assert key is not None  # an INSERT of one row always has it
        account_id = key[0]
        if credentials:
            await conn.execute(insert(ScramCredential), _credential_rows(account_id, credentials))
        await conn.execute(insert(RosterVersion).values(account_id=account_id, version=0))

    @staticmethod
    async def _insert_many(conn: AsyncConnection, rows: Sequence[AccountRow]) -> None:
        now = utcnow()
        result = await conn.execute(
            insert(Account).returning(Account.id, Account.username, Account.domain),
            [{"username": u, "domain": d, "created": now} for u, d, _ in rows],
        )
        ids = {(u, d): account_id for account_id, u, d in result.all()}
        credential_rows: list[dict] = []
        for username, domain, credentials in rows:
            credential_rows += _credential_rows(ids[(username, domain)], credentials)
        if credential_rows:
            await conn.execute(insert(ScramCredential), credential_rows)
        await conn.execute(
            insert(RosterVersion), [{"account_id": i, "version": 0} for i in ids.values()]
        )

    @staticmethod
    async def _replace_keys(
        conn: AsyncConnection, account_id: int, credentials: Mapping[str, ScramKeys]
    ) -> None:
        await conn.execute(delete(ScramCredential).where(ScramCredential.account_id == account_id))
        if credentials:
            await conn.execute(insert(ScramCredential), _credential_rows(account_id, credentials))

    @staticmethod
    async def _ids(
        conn: AsyncConnection, accounts: Sequence[tuple[str, str]], *, lock: bool = False
    ) -> dict[tuple[str, str], int]:
        if not accounts:
            return {}
        query = select(Account.id, Account.username, Account.domain).where(
            tuple_(Account.username, Account.domain).in_(accounts)
        )
        if lock:
            query = query.with_for_update()
        return {(u, d): account_id for account_id, u, d in (await conn.execute(query)).all()}

    @classmethod
    async def _existing(
        cls, conn: AsyncConnection, accounts: Sequence[tuple[str, str]]
    ) -> set[tuple[str, str]]:
        return set(await cls._ids(conn, accounts))


def _matching(query: Any, domain: str | None, search: str | None) -> Any:
    """`query` kept to `domain` and to names (or JIDs, for text with an '@')
    containing `search`, in any case."""
    if domain is not None:
        query = query.where(Account.domain == domain)
    if search:
        needle = search.lower()
        if "@" in needle:
            haystack = func.lower(Account.username + "@" + Account.domain)
        else:
            haystack = func.lower(Account.username)
        query = query.where(haystack.contains(needle, autoescape=True))
    return query
