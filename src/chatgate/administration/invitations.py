"""Invitation tokens for in-band registration (XEP-0401/0445), as `chatgate
invite` manages them: only a token's SHA-256 is stored, so the token is shown
once, at creation; afterwards an invitation is named by the first hex digits of
that hash (its id)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from chatgate.accounts import NameHolder
from chatgate.administration.accounts import account_service
from chatgate.administration.errors import Conflict, Invalid, NotFound
from chatgate.administration.targets import managed_domain, served_domain
from chatgate.auth.policy import PolicyViolation
from chatgate.storage.repositories.invitations import StoredInvite, invite_hash

if TYPE_CHECKING:
    from chatgate.context import ServerContext

#: hex digits of the token hash shown as an invitation's id (as `chatgate invite list`)
ID_LENGTH = 12
#: fewest hex digits accepted as an id
MIN_ID_LENGTH = 6
#: random bytes in a token: 144 bits
TOKEN_BYTES = 18


@dataclass(frozen=True, slots=True)
class NewInvitation:
    id: str
    #: the secret itself: shown once, never stored
    token: str
    uri: str
    invite: StoredInvite


def new_token() -> str:
    """A fresh invitation token: `TOKEN_BYTES` random bytes, URL-safe base64, never
    starting with '-'.

    One `secrets.token_urlsafe` in 64 starts with '-', and a command line reads such a
    token as an option (``chatgate invite revoke -Hym...`` failed with "No such option").
    A draw that starts with '-' is drawn again: the tokens left are uniform over the
    other 63/64 of the space, which costs 0.02 of the 144 bits.  (`revoke` also takes
    ``--`` before a token, for one made by an older version or listed in
    `invite_tokens`.)
    """
    while True:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        if not token.startswith("-"):
            return token


def register_uri(domain: str, token: str, username: str | None = None) -> str:
    """The XEP-0401 account invitation URI (as XEP-0445 and easy-onboarding clients read
    it): ``xmpp:DOMAIN?register;preauth=TOKEN``, with ``NAME@`` when the token registers
    one name only.  RFC 5122: the localpart and the domain are percent-encoded UTF-8."""
    where = quote(domain, safe="[]:")
    if username is not None:
        where = f"{quote(username, safe='')}@{where}"
    return f"xmpp:{where}?register;preauth={quote(token, safe='')}"


def state(invite: StoredInvite, now: datetime) -> str:
    if invite.uses_left <= 0:
        return "used up"
    if invite.expires is not None and invite.expires <= now:
        return "expired"
    return "usable"


async def list_invitations(ctx: ServerContext, domain: str | None = None) -> list[StoredInvite]:
    """Stored invitations, oldest first, usable or not."""
    if domain is not None:
        domain = served_domain(ctx, domain)
    return await ctx.db.invitations.invites(domain)


async def create_invitation(
    ctx: ServerContext,
    *,
    domain: str | None = None,
    username: str | None = None,
    uses: int = 1,
    expires_in: timedelta | None = None,
) -> NewInvitation:
    """Store a new random token.  A token for one name is checked against the
    account policy (Invalid naming `username`) and refused when something holds
    the name (Conflict)."""
    where = managed_domain(ctx, served_domain(ctx, domain))
    service = account_service(ctx)
    name = None
    if username is not None:
        try:
            name = service.username(username)
        except PolicyViolation as exc:
            raise Invalid(str(exc), "username") from None
        holder = await service.name_holder(name, where)
        if holder is not None:
            what = "an account" if holder is NameHolder.ACCOUNT else f"a {holder.value}"
            raise Conflict(f"{name}@{where} is held by {what}", "username")
    now = datetime.now(UTC)
    until = None if expires_in is None else now + expires_in
    token = new_token()
    if not await ctx.db.invitations.add_invite(
        token, where, username=name, uses=uses, expires=until
    ):
        raise RuntimeError("a fresh random token collided with a stored one")
    digest = invite_hash(token)
    stored = StoredInvite(digest, where, name, uses, until, now)
    return NewInvitation(digest[:ID_LENGTH], token, register_uri(where, token, name), stored)


async def revoke_invitation(ctx: ServerContext, invitation_id: str) -> str:
    """Delete the invitation whose id (hash prefix, at least `MIN_ID_LENGTH` hex
    digits) is given; returns its full hash.  NotFound when none matches, Conflict
    when several do (give more digits)."""
    prefix = invitation_id.lower()
    if len(prefix) < MIN_ID_LENGTH:
        raise NotFound(f"no invitation {invitation_id} (ids have at least {MIN_ID_LENGTH} digits)")
    matches = await ctx.db.invitations.revoke_invite_hash(prefix)
    if not matches:
        raise NotFound(f"no invitation {invitation_id}")
    if len(matches) > 1:
        raise Conflict(f"{len(matches)} invitations have ids starting with {invitation_id}")
    return matches[0]
