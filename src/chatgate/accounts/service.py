"""The account service: the one place where accounts are created, changed, locked
and deleted, whoever asks (the command line, in-band registration, the admin API).

What it owns: the order of every change (the account policy, then the derivation
of what a password stores, then one storage transaction, then the notice to every
credential cache) and the rules that used to live in each caller:

* a new name must pass the account policy (`auth/policy.py`) and be held by
  nothing: no account, no registration awaiting approval, no usable invitation made
  for it (`name_holder`; the storage transaction checks again, `claim_name`);
* a password is checked by the policy and stored as SCRAM keys (every hash) and the
  legacy secrets `[modules.legacy_auth]` asks for (`PasswordRecipe`), never as
  itself; key derivation runs in a worker thread, never on the event loop;
* after every stored change the `CredentialsChanged` notifier is told, so no
  process logs in on what it cached before (`notify.py`);
* a deletion takes everything hanging off the account: what it owns goes by the
  database's cascade (keys, legacy secrets, registration fields, roster, its
  pending requests, offline messages, vCard, stream key), a registration of the
  name awaiting approval goes too, and in a server the account's presence
  subscriptions are withdrawn first (`LiveAccounts.withdraw`);
* a lock keeps the account and everything it owns, but no login succeeds
  (`auth/internal.py`); in a server its sessions are closed.

What it must not do: know a transport (no exit codes, stanza errors or HTTP
statuses, no messages worded for one kind of user) or keep state of its own.
Errors: `PolicyViolation` (the caller's input breaks the policy), `NameTaken`,
`NoSuchAccount`, and `InviteUnavailable` from storage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from chatgate.accounts.errors import NameTaken, NoSuchAccount
from chatgate.accounts.notify import ChangeKind, CredentialChange, CredentialsChanged
from chatgate.auth.credentials import ScramKeys, derive_all
from chatgate.auth.policy import AccountPolicy
from chatgate.modules.legacy_auth import LegacyAuthOptions, derive_legacy_secrets
from chatgate.storage.database import Database
from chatgate.storage.errors import AccountExists, AccountNotFound
from chatgate.storage.models import utcnow
from chatgate.storage.repositories.accounts import NameHolder
from chatgate.storage.repositories.legacy_records import LegacySecrets

#: the text of the stream error that ends an account's sessions when it is locked,
#: and when it is removed (a cluster node that missed one tells them apart)
LOCKED_TEXT = "the account was locked"
REMOVED_TEXT = "the account was removed"


@dataclass(frozen=True, slots=True)
class StoredPassword:
    """What is stored for a password: SCRAM keys by hashlib name, and legacy secrets."""

    keys: dict[str, ScramKeys]
    legacy: LegacySecrets


@dataclass(frozen=True, slots=True)
class PasswordRecipe:
    """How a password is stored: `[auth] scram_iterations` and the legacy secrets
    `[modules.legacy_auth]` asks for."""

    iterations: int
    legacy: LegacyAuthOptions = field(default_factory=LegacyAuthOptions)

    def derive(self, password: str, username: str, domain: str) -> StoredPassword:
        """CPU work (PBKDF2 per hash, PRECIS, a zero-knowledge hash chain): call it in
        a worker thread.  Raises ValueError for a password PRECIS refuses."""
        keys = derive_all(password, iterations=self.iterations)
        return StoredPassword(keys, derive_legacy_secrets(password, username, domain, self.legacy))


@dataclass(frozen=True, slots=True)
class AccountRules:
    """The configured rules: the account policy (`[modules.register]`) and the recipe."""

    policy: AccountPolicy
    recipe: PasswordRecipe


@dataclass(frozen=True, slots=True)
class Deletion:
    """What `delete` deleted: the account, a registration of the name awaiting
    approval (either may have been absent; both False: nothing had the name)."""

    account: bool
    pending: bool


@dataclass(frozen=True, slots=True)
class AccountInfo:
    username: str
    domain: str
    created: datetime
    locked: bool


class LiveAccounts(Protocol):
    """What a running server does about an account's live side (`server.py`); the
    command line has none, and its changes reach sessions only at their next login."""

    async def withdraw(self, username: str, domain: str) -> None:
        """Before the account is deleted: withdraw what others hold of it (presence
        subscriptions both ways, requests to and from it), RFC 6121 §3.2/§3.3."""
        ...

    def end_sessions(self, username: str, domain: str, text: str) -> int:
        """Close every session of the account (<not-authorized/> with `text`);
        returns how many."""
        ...


class AccountService:
    """Create, change, lock and delete accounts; see the module docstring.

    `clock` gives the time invitations are judged at (UTC, aware)."""

    def __init__(
        self,
        db: Database,
        rules: AccountRules,
        changed: CredentialsChanged,
        *,
        live: LiveAccounts | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self.rules = rules
        self._changed = changed
        self._live = live
        self._clock = clock

    # ------------------------------------------------------------------ the rules

    def username(self, text: str | None, *, allow_reserved: bool = False) -> str:
        """The prepared name when the policy allows it for a new account; raises
        `PolicyViolation` (`NameUnavailable` for a reserved name, unless
        `allow_reserved`: an operator making ``admin`` on purpose)."""
        return self.rules.policy.username(text, allow_reserved=allow_reserved)

    def password(self, text: str | None) -> str:
        """`text` when the policy allows it as a password; raises `PolicyViolation`.
        Costs a PRECIS pass: a server calls it in a worker thread."""
        return self.rules.policy.password(text)

    async def name_holder(self, username: str, domain: str) -> NameHolder | None:
        """What holds username@domain (an account, locked or not; a registration
        awaiting approval; a usable invitation for that name), or None when a new
        account may take it."""
        return await self._db.accounts.name_holder(username, domain, self._clock())

    # -------------------------------------------------------------------- reads

    async def exists(self, username: str, domain: str) -> bool:
        return await self._db.accounts.exists(username, domain)

    async def locked(self, username: str, domain: str) -> bool | None:
        """Whether the account is locked; None when there is no such account."""
        return await self._db.accounts.locked(username, domain)

    async def accounts(self, domain: str | None = None) -> list[AccountInfo]:
        """Every account (of `domain`), by domain then name, with its lock."""
        listed = await self._db.accounts.list(domain)
        locked = await self._db.accounts.locked_accounts(domain)
        return [
            AccountInfo(a.username, a.domain, a.created, (a.username, a.domain) in locked)
            for a in listed
        ]

    # ----------------------------------------------------------------- creating

    async def create(
        self,
        username: str,
        domain: str,
        password: str,
        *,
        fields: Mapping[str, str] | None = None,
        invite: str | None = None,
        now: datetime | None = None,
        allow_reserved: bool = False,
    ) -> str:
        """Create the account with its keys, legacy secrets and registration `fields`,
        redeeming the invitation token `invite` in the same transaction (checked at
        `now`: XEP-0445 judges a token when it is presented).  Returns the prepared
        name.  Raises `PolicyViolation`, `NameTaken`, `InviteUnavailable`."""
        username, stored = await self._prepare(username, domain, password, allow_reserved)
        try:
            await self._db.registration.create_account(
                username, domain, stored.keys, stored.legacy, fields or {}, invite=invite, now=now
            )
        except AccountExists:
            raise NameTaken(username, domain, await self.name_holder(username, domain)) from None
        await self._tell(username, domain, ChangeKind.CREATED)
        return username

    async def hold(
        self,
        username: str,
        domain: str,
        password: str,
        *,
        fields: Mapping[str, str] | None = None,
        address: str | None = None,
        invite: str | None = None,
        now: datetime | None = None,
    ) -> str:
        """`create`, held for an administrator's approval (`approve`): the name is
        taken at once, logging in works after approval.  `address`: where the
        request came from, for the administrator.  Raises as `create`."""
        username, stored = await self._prepare(username, domain, password, False)
        try:
            await self._db.pending_registrations.create_pending(
                username,
                domain,
                stored.keys,
                stored.legacy,
                fields or {},
                address=address,
                invite=invite,
                now=now,
            )
        except AccountExists:
            raise NameTaken(username, domain, await self.name_holder(username, domain)) from None
        await self._tell(username, domain, ChangeKind.HELD)
        return username

    async def approve(self, username: str, domain: str) -> bool:
        """Turn a registration awaiting approval into the account; False when none of
        that name is pending.  Raises `NameTaken` (holder ACCOUNT), keeping the
        registration pending, when an account of that name exists."""
        try:
            approved = await self._db.pending_registrations.approve(username, domain)
        except AccountExists:
            raise NameTaken(username, domain, NameHolder.ACCOUNT) from None
        if approved:
            await self._tell(username, domain, ChangeKind.RESOLVED)
        return approved

    async def reject(self, username: str, domain: str) -> bool:
        """Delete a registration awaiting approval with everything it holds; the name
        is free again.  False when none of that name is pending."""
        rejected = await self._db.pending_registrations.reject(username, domain)
        if rejected:
            await self._tell(username, domain, ChangeKind.RESOLVED)
        return rejected

    # ----------------------------------------------------------------- changing

    async def change_password(self, username: str, domain: str, password: str) -> None:
        """Replace every stored key and legacy secret with the new password's (the
        zero-knowledge chain starts over), in one transaction.  Sessions already
        open stay open.  Raises `PolicyViolation`, `NoSuchAccount`."""
        stored = await asyncio.to_thread(self._derive, password, username, domain)
        try:
            await self._db.legacy.change_password((username, domain), stored.keys, stored.legacy)
        except AccountNotFound:
            raise NoSuchAccount(username, domain) from None
        await self._tell(username, domain, ChangeKind.PASSWORD)

    async def lock(self, username: str, domain: str) -> bool:
        """Stop every login of the account until `unlock`; it keeps everything it
        owns and receives what is sent to it (offline).  In a server its sessions
        are closed.  False when it was locked already.  Raises `NoSuchAccount`."""
        changed = await self._set_locked(username, domain, True)
        if self._live is not None:
            self._live.end_sessions(username, domain, LOCKED_TEXT)
        return changed

    async def unlock(self, username: str, domain: str) -> bool:
        """Let the account log in again; False when it was not locked.  Raises
        `NoSuchAccount`."""
        return await self._set_locked(username, domain, False)

    async def delete(self, username: str, domain: str, *, end_sessions: bool = True) -> Deletion:
        """Delete the account and everything hanging off it (the module docstring
        says what), and a registration of the name awaiting approval; the name is
        free at once.  In a server, presence subscriptions are withdrawn first and,
        with `end_sessions`, its sessions are closed after (in-band <remove/> closes
        them itself, after its answer)."""
        if self._live is not None:
            await self._live.withdraw(username, domain)
        account = await self._db.accounts.delete(username, domain)
        # Normally absent (a name is an account's or a registration's), but a name
        # in both (made by an old tool) leaves neither behind.
        pending = await self._db.pending_registrations.reject(username, domain)
        # TODO: the subscription requests the account sent stay pending in its
        # contacts' rosters when no server withdrew them (the command line): they
        # need a roster-repository method to delete them with the account.
        if account or pending:
            kind = ChangeKind.DELETED if account else ChangeKind.RESOLVED
            await self._tell(username, domain, kind)
        if account and end_sessions and self._live is not None:
            self._live.end_sessions(username, domain, REMOVED_TEXT)
        return Deletion(account, pending)

    # ---------------------------------------------------------------- internals

    async def _prepare(
        self, username: str, domain: str, password: str, allow_reserved: bool
    ) -> tuple[str, StoredPassword]:
        username = self.username(username, allow_reserved=allow_reserved)
        return username, await asyncio.to_thread(self._derive, password, username, domain)

    def _derive(self, password: str, username: str, domain: str) -> StoredPassword:
        """The policy's checks, then the recipe (in a worker thread: both cost CPU)."""
        return self.rules.recipe.derive(self.password(password), username, domain)

    async def _set_locked(self, username: str, domain: str, locked: bool) -> bool:
        try:
            changed = await self._db.accounts.set_locked(username, domain, locked)
        except AccountNotFound:
            raise NoSuchAccount(username, domain) from None
        if changed:
            kind = ChangeKind.LOCKED if locked else ChangeKind.UNLOCKED
            await self._tell(username, domain, kind)
        return changed

    async def _tell(self, username: str, domain: str, kind: ChangeKind) -> None:
        await self._changed.credentials_changed(CredentialChange(username, domain, kind))
