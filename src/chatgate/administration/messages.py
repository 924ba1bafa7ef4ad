"""Messages from the server to local accounts (announcements, notices).

The message goes through the router (`ctx.router`), the only way to deliver,
from the domain of the recipient: to a full JID's resource when it is
connected, else by RFC 6121 §8.5.2 to the bare JID (a `chat`/`normal` message
to the available resources of highest priority or offline storage, a `headline`
to every available resource and never stored).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from chatgate.administration.errors import Invalid, NotFound
from chatgate.jid import JID, InvalidJID
from chatgate.vocabulary import ns
from chatgate.xml.element import Element

if TYPE_CHECKING:
    from chatgate.context import ServerContext

MessageType = Literal["normal", "chat", "headline"]
#: most characters of a message body (64 KiB of text)
MAX_BODY = 65_536
#: what XML 1.0 cannot carry (§2.2 Char): control characters, surrogates, U+FFFE/F
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class Sent:
    id: str
    to: str
    type: MessageType
    #: written to a connected resource at once (False: stored offline, or dropped
    #: for a headline nobody is available for)
    delivered_now: bool


async def send_message(
    ctx: ServerContext,
    to: str,
    body: str,
    *,
    type: MessageType = "normal",
    subject: str | None = None,
) -> Sent:
    """Send `body` from the server to local JID `to` (bare or full).  Invalid when
    `to` is malformed or not local; NotFound when the account does not exist."""
    for field, text in (("body", body), ("subject", subject or "")):
        if _NOT_XML.search(text):
            raise Invalid(f"the {field} has a character XML cannot carry", field)
    try:
        jid = JID.parse(to)
    except InvalidJID as exc:
        raise Invalid(f"invalid JID: {exc}", "to") from None
    if not jid.local or jid.domain not in ctx.hosts:
        raise Invalid("messages go to accounts of the domains this server serves", "to")
    if not await ctx.account_exists(jid.local, jid.domain):
        raise NotFound(f"no such account {jid.bare}")
    stanza_id = os.urandom(8).hex()
    message = Element(
        "message", ns.CLIENT, {"from": jid.domain, "to": str(jid), "type": type, "id": stanza_id}
    )
    if subject:
        message.sub("subject", text=subject)
    message.sub("body", text=body)
    router = ctx.router
    delivered = jid.resource != "" and router.deliver_to_full(jid, message)
    if not delivered:
        delivered = _available_here(ctx, str(jid.bare))
        pending = router.deliver_message_to_bare(message, jid)
        if pending is not None:
            await pending
    return Sent(stanza_id, str(jid), type, delivered)


def _available_here(ctx: ServerContext, bare: str) -> bool:
    from chatgate.administration.sessions import list_sessions

    return any(s.available and s.priority >= 0 for s in list_sessions(ctx, account=bare))
