"""An account's roster as an operator sees it (read only: contacts are the
user's to change, through their client)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatgate.administration.errors import NotFound
from chatgate.administration.targets import account_jid
from chatgate.storage.records import RosterItem

if TYPE_CHECKING:
    from chatgate.context import ServerContext


async def roster_of(ctx: ServerContext, jid: str) -> tuple[list[RosterItem], list[str]]:
    """The account's contacts (by JID) and the JIDs asking to subscribe to it
    (pending in, RFC 6121 §3.1.3).  NotFound when there is no such account."""
    username, domain = account_jid(ctx, jid)
    if not await ctx.db.accounts.exists(username, domain):
        raise NotFound(f"no such account {username}@{domain}")
    owner = (username, domain)
    items = sorted(await ctx.db.roster.items(owner), key=lambda i: i.jid)
    return items, sorted(await ctx.db.roster.pending_in(owner))
