"""Accounts as an operator manages them: list (paged, searched), look at one,
create, change the password, lock and unlock, delete.

Every change goes through the account service (`accounts/service.py`) built as
in-band registration builds it (`server_account_service`, under
`[modules.register]`'s account policy), so the API, the console, the CLI and
registration apply one set of rules, and a change reaches every process's
credential cache and this process's sessions (a lock or a deletion closes
them).  This module only translates: JIDs in, `AccountView`s out, the service's
refusals into `OperationError`s.

Paging is keyset paging on (domain, username), the order the repository lists
accounts in: a page's `next` is the last JID shown, so a page is stable while
accounts are created or deleted before it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from chatgate.accounts import AccountService, NameTaken, NoSuchAccount
from chatgate.accounts.server import server_account_service
from chatgate.administration import sessions
from chatgate.administration.errors import Conflict, Invalid, NotFound
from chatgate.administration.targets import account_jid, managed_domain, served_domain
from chatgate.auth.policy import NameUnavailable, PolicyViolation
from chatgate.modules.register import RegisterOptions

if TYPE_CHECKING:
    from chatgate.context import ServerContext

#: most accounts one page may hold
MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class AccountView:
    jid: str
    username: str
    domain: str
    created: datetime
    locked: bool
    #: full JIDs of its sessions on this process
    sessions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AccountPage:
    items: list[AccountView]
    #: the JID to continue after, or None on the last page
    next_after: str | None
    #: accounts matching the search in total
    total: int


def account_service(ctx: ServerContext) -> AccountService:
    """The service as registration runs it (the same policy and notifier)."""
    policy = ctx.options("register", RegisterOptions).account_policy()
    return server_account_service(ctx, policy)


def _online(ctx: ServerContext) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for info in sessions.list_sessions(ctx):
        found.setdefault(info.account, []).append(info.jid)
    return found


async def list_accounts(
    ctx: ServerContext,
    *,
    domain: str | None = None,
    search: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> AccountPage:
    """Accounts by domain then name; `search` keeps those whose JID contains it (any
    case: the username, or the whole JID when
    it has an '@'); `after` continues from a page's last JID.  Invalid for an unserved domain."""
    if domain is not None:
        domain = served_domain(ctx, domain)
    limit = max(1, min(limit, MAX_PAGE))
    repository = ctx.db.accounts
    rows = await repository.page(
        domain=domain,
        search=search,
        after=_key(after) if after is not None else None,
        limit=limit + 1,  # one more tells whether another page follows
    )
    total = await repository.count_matching(domain=domain, search=search)
    online = _online(ctx)
    items = [_view(u, d, created, locked, online) for u, d, created, locked in rows[:limit]]
    more = len(rows) > limit
    return AccountPage(items, items[-1].jid if more and items else None, total)


def _key(jid: str) -> tuple[str, str]:
    username, _, domain = jid.rpartition("@")
    return domain, username


def _view(
    username: str, domain: str, created: datetime, locked: bool, online: dict[str, list[str]]
) -> AccountView:
    jid = f"{username}@{domain}"
    return AccountView(jid, username, domain, created, locked, tuple(online.get(jid, ())))


async def get_account(ctx: ServerContext, jid: str) -> AccountView:
    """One account (NotFound when there is none)."""
    username, domain = account_jid(ctx, jid)
    found = await ctx.db.accounts.summary(username, domain)
    if found is None:
        raise NotFound(f"no such account {username}@{domain}")
    created, locked = found
    return _view(username, domain, created, locked, _online(ctx))


async def create_account(
    ctx: ServerContext,
    username: str,
    password: str,
    *,
    domain: str | None = None,
    allow_reserved: bool = False,
) -> AccountView:
    """Create an account under the account policy.  Invalid (naming `username` or
    `password`) when the policy refuses; Conflict when something holds the name."""
    where = managed_domain(ctx, served_domain(ctx, domain))
    service = account_service(ctx)
    try:
        service.username(username, allow_reserved=allow_reserved)
    except NameUnavailable as exc:
        raise Conflict(f"{exc} (reserved: set allow_reserved to create it)", "username") from None
    except PolicyViolation as exc:
        raise Invalid(str(exc), "username") from None
    try:
        await asyncio.to_thread(service.password, password)
    except PolicyViolation as exc:
        raise Invalid(str(exc), "password") from None
    try:
        name = await service.create(username, where, password, allow_reserved=allow_reserved)
    except NameTaken as exc:
        raise Conflict(str(exc), "username") from None
    except PolicyViolation as exc:
        raise Invalid(str(exc), "password") from None
    return await get_account(ctx, f"{name}@{where}")


async def change_password(ctx: ServerContext, jid: str, password: str) -> None:
    """Replace the password (open sessions stay open).  Invalid when the policy
    refuses it; NotFound for no such account."""
    username, domain = account_jid(ctx, jid)
    managed_domain(ctx, domain)
    service = account_service(ctx)
    try:
        await service.change_password(username, domain, password)
    except PolicyViolation as exc:
        raise Invalid(str(exc), "password") from None
    except NoSuchAccount:
        raise NotFound(f"no such account {username}@{domain}") from None


async def set_locked(ctx: ServerContext, jid: str, locked: bool) -> bool:
    """Lock (ending its sessions) or unlock; True when that changed the account."""
    username, domain = account_jid(ctx, jid)
    managed_domain(ctx, domain)
    service = account_service(ctx)
    try:
        if locked:
            return await service.lock(username, domain)
        return await service.unlock(username, domain)
    except NoSuchAccount:
        raise NotFound(f"no such account {username}@{domain}") from None


async def delete_account(ctx: ServerContext, jid: str) -> None:
    """Delete the account with everything it owns and end its sessions (NotFound
    when there is no such account)."""
    username, domain = account_jid(ctx, jid)
    managed_domain(ctx, domain)
    service = account_service(ctx)
    if not await service.exists(username, domain):
        raise NotFound(f"no such account {username}@{domain}")
    deletion = await service.delete(username, domain)
    if not deletion.account:
        raise NotFound(f"no such account {username}@{domain}")
