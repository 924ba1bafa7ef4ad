"""`/accounts/{jid}/roster` (read only) and `/messages` (from the server)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from chatgate.administration import messages, rosters
from chatgate.http.api.models import Model
from chatgate.http.api.operation import Call, Operation
from chatgate.http.auth.base import Access


class RosterItemOut(Model):
    jid: str
    name: str | None
    subscription: Literal["none", "to", "from", "both"]
    ask: bool
    """A subscription request to the contact is pending."""
    approved: bool
    """The contact's subscription is pre-approved."""
    groups: list[str]


class RosterOut(Model):
    account: str
    items: list[RosterItemOut]
    pending_in: list[str]
    """JIDs asking to see the account's presence."""


class NewMessage(Model):
    to: Annotated[str, Field(min_length=1, max_length=3071)]
    """A local bare or full JID."""
    body: Annotated[str, Field(min_length=1, max_length=messages.MAX_BODY)]
    subject: Annotated[str | None, Field(max_length=1024)] = None
    type: Literal["normal", "chat", "headline"] = "normal"
    """`headline` goes to every available resource and is never stored offline."""


class SentOut(Model):
    id: str
    to: str
    type: Literal["normal", "chat", "headline"]
    delivered_now: bool
    """Written to a connected resource at once (false: stored offline, or a headline
    nobody was available for)."""


async def get_roster(call: Call) -> RosterOut:
    jid = call.param("jid")
    items, pending = await rosters.roster_of(call.ctx, jid)
    return RosterOut(
        account=jid,
        items=[
            RosterItemOut(
                jid=i.jid,
                name=i.name,
                subscription=i.subscription.value,
                ask=i.ask,
                approved=i.approved,
                groups=list(i.groups),
            )
            for i in items
        ],
        pending_in=pending,
    )


async def send_message(call: Call) -> SentOut:
    body = call.body_as(NewMessage)
    sent = await messages.send_message(
        call.ctx, body.to, body.body, type=body.type, subject=body.subject
    )
    call.target = sent.to
    call.detail = f"{sent.type}, {len(body.body)} characters"
    return SentOut(id=sent.id, to=sent.to, type=sent.type, delivered_now=sent.delivered_now)


OPERATIONS = (
    Operation(
        "GET",
        "/accounts/{jid}/roster",
        get_roster,
        "An account's roster",
        "accounts",
        response=RosterOut,
        params={"jid": "Bare JID of the account"},
    ),
    Operation(
        "POST",
        "/messages",
        send_message,
        "Send a message or headline as the server",
        "messages",
        access=Access.WRITE,
        body=NewMessage,
        response=SentOut,
        errors=(404,),
        action="message.send",
        description="From the recipient's domain, through the router: a full JID's"
        " connected resource, else the account by RFC 6121 rules (offline storage for"
        " normal and chat). 404 when the account does not exist.",
    ),
)
