"""`/accounts`: create, list (paged, searched), get, change the password,
lock/unlock and delete accounts of the internal store."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from chatgate.administration import accounts
from chatgate.http.api.models import MAX_QUERY_TEXT, Model, Paged, PageQuery
from chatgate.http.api.operation import Call, Operation
from chatgate.http.api.paging import decode_cursor, encode_cursor
from chatgate.http.auth.base import Access

#: RFC 7622 parts are at most 1023 bytes
NAME = Annotated[str, Field(min_length=1, max_length=1023)]
#: `auth/passwords.py` refuses passwords over 1,024 bytes
PASSWORD = Annotated[str, Field(min_length=1, max_length=1024)]


class AccountOut(Model):
    jid: str
    username: str
    domain: str
    created: datetime
    locked: bool
    sessions: list[str]
    """Full JIDs of its live sessions (on this server process)."""


class AccountList(Paged):
    items: list[AccountOut]
    total: int
    """Accounts matching the search, on every page."""


class AccountsQuery(PageQuery):
    search: Annotated[str | None, Field(max_length=MAX_QUERY_TEXT)] = None
    """Keep usernames containing this (any case); with an '@', whole JIDs."""
    domain: Annotated[str | None, Field(max_length=MAX_QUERY_TEXT)] = None
    """Only accounts of this served domain."""


class NewAccount(Model):
    username: NAME
    password: PASSWORD
    domain: Annotated[str | None, Field(max_length=1023)] = None
    """A served domain; the main domain when absent."""
    allow_reserved: bool = False
    """Create a name `[modules.register] reserved_usernames` reserves."""


class NewPassword(Model):
    password: PASSWORD


def account_out(view: accounts.AccountView) -> AccountOut:
    return AccountOut(
        jid=view.jid,
        username=view.username,
        domain=view.domain,
        created=view.created,
        locked=view.locked,
        sessions=list(view.sessions),
    )


async def list_accounts(call: Call) -> AccountList:
    q = call.query_as(AccountsQuery)
    after = None if q.cursor is None else str(decode_cursor(q.cursor, str))
    page = await accounts.list_accounts(
        call.ctx, domain=q.domain, search=q.search, after=after, limit=q.limit
    )
    return AccountList(
        items=[account_out(a) for a in page.items],
        next=None if page.next_after is None else encode_cursor(page.next_after),
        total=page.total,
    )


async def create_account(call: Call) -> AccountOut:
    body = call.body_as(NewAccount)
    view = await accounts.create_account(
        call.ctx,
        body.username,
        body.password,
        domain=body.domain,
        allow_reserved=body.allow_reserved,
    )
    call.target = view.jid
    call.detail = "reserved name" if body.allow_reserved else None
    return account_out(view)


async def get_account(call: Call) -> AccountOut:
    return account_out(await accounts.get_account(call.ctx, call.param("jid")))


async def change_password(call: Call) -> None:
    call.target = call.param("jid")
    await accounts.change_password(call.ctx, call.target, call.body_as(NewPassword).password)


async def lock_account(call: Call) -> AccountOut:
    call.target = call.param("jid")
    changed = await accounts.set_locked(call.ctx, call.target, True)
    call.detail = None if changed else "was locked already"
    return account_out(await accounts.get_account(call.ctx, call.target))


async def unlock_account(call: Call) -> AccountOut:
    call.target = call.param("jid")
    changed = await accounts.set_locked(call.ctx, call.target, False)
    call.detail = None if changed else "was not locked"
    return account_out(await accounts.get_account(call.ctx, call.target))


async def delete_account(call: Call) -> None:
    call.target = call.param("jid")
    await accounts.delete_account(call.ctx, call.target)


_JID = {"jid": "Bare JID of the account, user@domain"}

OPERATIONS = (
    Operation(
        "GET",
        "/accounts",
        list_accounts,
        "List accounts",
        "accounts",
        query=AccountsQuery,
        response=AccountList,
        description="By domain then username; `search` filters, `limit`/`cursor` page.",
    ),
    Operation(
        "POST",
        "/accounts",
        create_account,
        "Create an account",
        "accounts",
        access=Access.WRITE,
        body=NewAccount,
        response=AccountOut,
        status=201,
        errors=(404, 409),
        action="account.create",
        description="Under the account policy (`[modules.register]`: name and password"
        " rules, reserved names). 409 when an account, a registration awaiting approval"
        " or an invitation holds the name; 404 when the domain's accounts are not kept"
        " by chatgate.",
    ),
    Operation(
        "GET",
        "/accounts/{jid}",
        get_account,
        "Get an account",
        "accounts",
        response=AccountOut,
        params=_JID,
    ),
    Operation(
        "PUT",
        "/accounts/{jid}/password",
        change_password,
        "Change an account's password",
        "accounts",
        access=Access.WRITE,
        body=NewPassword,
        action="account.password",
        params=_JID,
        description="Open sessions stay open.",
    ),
    Operation(
        "POST",
        "/accounts/{jid}/lock",
        lock_account,
        "Lock an account",
        "accounts",
        access=Access.WRITE,
        response=AccountOut,
        action="account.lock",
        params=_JID,
        description="No login succeeds until it is unlocked; its sessions are closed. It"
        " keeps everything it owns.",
    ),
    Operation(
        "POST",
        "/accounts/{jid}/unlock",
        unlock_account,
        "Unlock an account",
        "accounts",
        access=Access.WRITE,
        response=AccountOut,
        action="account.unlock",
        params=_JID,
    ),
    Operation(
        "DELETE",
        "/accounts/{jid}",
        delete_account,
        "Delete an account",
        "accounts",
        access=Access.WRITE,
        action="account.delete",
        params=_JID,
        description="With everything it owns (roster, offline messages, vCard, stream"
        " key ...); its sessions are closed and the name is free at once.",
    ),
)
