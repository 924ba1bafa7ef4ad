"""In-band registration as an operator sees it: the settings (`[modules.register]`,
changed in the configuration file), the registrations awaiting approval, and
approving or rejecting them through the account service."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatgate.accounts import NameTaken
from chatgate.administration.accounts import account_service
from chatgate.administration.errors import Conflict, NotFound
from chatgate.administration.targets import account_jid, served_domain
from chatgate.modules.register import RegisterOptions
from chatgate.storage.repositories.pending_registrations import PendingAccount

if TYPE_CHECKING:
    from chatgate.context import ServerContext


def settings(ctx: ServerContext) -> RegisterOptions:
    """`[modules.register]` as the server runs with it (its invitation tokens are
    secrets: callers show how many, never the tokens)."""
    return ctx.options("register", RegisterOptions)


async def pending(ctx: ServerContext, domain: str | None = None) -> list[PendingAccount]:
    """Registrations awaiting approval, oldest first."""
    if domain is not None:
        domain = served_domain(ctx, domain)
    return await ctx.db.pending_registrations.pending(domain)


async def approve(ctx: ServerContext, jid: str) -> None:
    """Turn the pending registration into an account.  NotFound when none of that
    name is pending; Conflict when an account of that name exists."""
    username, domain = account_jid(ctx, jid)
    try:
        approved = await account_service(ctx).approve(username, domain)
    except NameTaken:
        raise Conflict(f"an account {username}@{domain} exists already: reject it") from None
    if not approved:
        raise NotFound(f"no registration of {username}@{domain} is pending")


async def reject(ctx: ServerContext, jid: str) -> None:
    """Delete the pending registration; the name is free again.  NotFound when none."""
    username, domain = account_jid(ctx, jid)
    if not await account_service(ctx).reject(username, domain):
        raise NotFound(f"no registration of {username}@{domain} is pending")
