"""Naming what an operation acts on: a local account by bare JID, a served domain.

An operator types JIDs; these turn them into the prepared (username, domain)
the account service and the repositories take, or refuse them with an error
naming the field.  Domains must be served by this server; accounts must be kept
by the internal store (an LDAP or HTTP provider keeps its own accounts, which
chatgate can neither list nor change).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatgate.administration.errors import Invalid, NotFound, Unavailable
from chatgate.jid import JID, InvalidJID

if TYPE_CHECKING:
    from chatgate.context import ServerContext


def served_domain(ctx: ServerContext, domain: str | None, field: str = "domain") -> str:
    """`domain` prepared, or the main domain when None; Invalid when it is not served."""
    if domain is None:
        return ctx.domain
    try:
        prepared = JID.parse(domain)
    except InvalidJID as exc:
        raise Invalid(f"invalid domain: {exc}", field) from None
    if prepared.local or prepared.resource or prepared.domain not in ctx.hosts:
        raise Invalid(f"{domain} is not a domain this server serves", field)
    return prepared.domain


def managed_domain(ctx: ServerContext, domain: str, field: str = "domain") -> str:
    """A served domain whose accounts chatgate keeps (internal provider, not anonymous);
    Unavailable otherwise."""
    from chatgate.accounts.server import internal_provider_of

    if ctx.is_anonymous(domain):
        raise Unavailable(f"{domain} is an anonymous host: it has no accounts to manage")
    if internal_provider_of(ctx, domain) is None:
        raise Unavailable(
            f"{domain} uses an external credential provider: its accounts are kept there"
        )
    return domain


def account_jid(ctx: ServerContext, text: str, field: str = "jid") -> tuple[str, str]:
    """(username, domain) of the bare JID `text` of a served domain; NotFound when it
    cannot name a local account (malformed, a full JID, another domain)."""
    try:
        jid = JID.parse(text)
    except InvalidJID:
        raise NotFound(f"no such account {text}") from None
    if not jid.local or jid.resource or jid.domain not in ctx.hosts:
        raise NotFound(f"no such account {text}")
    return jid.local, jid.domain


def full_jid(text: str) -> str:
    """The prepared full JID `text` (NotFound when it is not one: it names no session)."""
    try:
        jid = JID.parse(text)
    except InvalidJID:
        raise NotFound(f"no session {text} is connected") from None
    if not jid.local or not jid.resource:
        raise NotFound(f"no session {text} is connected (give a full JID, user@domain/resource)")
    return str(jid)
