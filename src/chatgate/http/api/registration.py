"""`/registration`: in-band registration settings, registrations awaiting
approval (approve/reject) and invitation tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from chatgate.administration import invitations, registration
from chatgate.http.api.models import MAX_QUERY_TEXT, Model, QueryModel
from chatgate.http.api.operation import Call, Operation
from chatgate.http.auth.base import Access


class RegistrationSettings(Model):
    """`[modules.register]`, changed in the configuration file (and a restart)."""

    enabled: bool
    approval: bool
    """New registrations wait for an administrator's approval."""
    invites: Literal["off", "optional", "required"]
    require_tls: bool
    fields: list[str]
    min_username_length: int
    max_username_length: int
    min_password_length: int
    reserved_usernames: list[str]
    min_seconds_between_inquiry_and_attempt: float
    configured_invite_tokens: int
    """How many tokens the configuration lists (never the tokens)."""
    notify: list[str]
    allow_password_change: bool
    allow_remove: bool


class PendingOut(Model):
    jid: str
    requested: datetime
    address: str | None
    fields: dict[str, str]


class PendingList(Model):
    items: list[PendingOut]


class DomainQuery(QueryModel):
    domain: Annotated[str | None, Field(max_length=MAX_QUERY_TEXT)] = None
    """Only this served domain."""


class InvitationOut(Model):
    id: str
    """The first hex digits of the token's SHA-256 (the token is not stored)."""
    domain: str
    username: str | None
    """The only name it registers, if any."""
    uses_left: int
    expires: datetime | None
    created: datetime
    state: Literal["usable", "used up", "expired"]


class InvitationList(Model):
    items: list[InvitationOut]


class NewInvitation(Model):
    domain: Annotated[str | None, Field(max_length=1023)] = None
    username: Annotated[str | None, Field(min_length=1, max_length=1023)] = None
    uses: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    expires_in: Annotated[int | None, Field(ge=60, le=366 * 86400)] = None
    """Seconds the token works for; never expires when absent."""


class CreatedInvitation(InvitationOut):
    token: str
    """The token: shown only now."""
    uri: str
    """XEP-0401 invitation URI (xmpp:DOMAIN?register;preauth=TOKEN)."""


async def get_settings(call: Call) -> RegistrationSettings:
    o = registration.settings(call.ctx)
    return RegistrationSettings(
        enabled=o.enabled,
        approval=o.approval,
        invites=o.invites,
        require_tls=o.require_tls,
        fields=list(o.fields),
        min_username_length=o.min_username_length,
        max_username_length=o.max_username_length,
        min_password_length=o.min_password_length,
        reserved_usernames=list(o.reserved_usernames),
        min_seconds_between_inquiry_and_attempt=o.min_seconds_between_inquiry_and_attempt,
        configured_invite_tokens=len(o.invite_tokens),
        notify=list(o.notify),
        allow_password_change=o.allow_password_change,
        allow_remove=o.allow_remove,
    )


async def list_pending(call: Call) -> PendingList:
    q = call.query_as(DomainQuery)
    waiting = await registration.pending(call.ctx, q.domain)
    return PendingList(
        items=[
            PendingOut(
                jid=f"{p.username}@{p.domain}",
                requested=p.created if p.created.tzinfo else p.created.replace(tzinfo=UTC),
                address=p.address,
                fields=p.fields,
            )
            for p in waiting
        ]
    )


async def approve(call: Call) -> None:
    call.target = call.param("jid")
    await registration.approve(call.ctx, call.target)


async def reject(call: Call) -> None:
    call.target = call.param("jid")
    await registration.reject(call.ctx, call.target)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _invitation(invite: invitations.StoredInvite, now: datetime) -> InvitationOut:
    return InvitationOut(
        id=invite.token_hash[: invitations.ID_LENGTH],
        domain=invite.domain,
        username=invite.username,
        uses_left=invite.uses_left,
        expires=_aware(invite.expires),
        created=_aware(invite.created) or now,
        state=invitations.state(invite, now),  # type: ignore[arg-type]
    )


async def list_invitations(call: Call) -> InvitationList:
    q = call.query_as(DomainQuery)
    now = datetime.now(UTC)
    stored = await invitations.list_invitations(call.ctx, q.domain)
    return InvitationList(items=[_invitation(i, now) for i in stored])


async def create_invitation(call: Call) -> CreatedInvitation:
    body = call.body_as(NewInvitation)
    made = await invitations.create_invitation(
        call.ctx,
        domain=body.domain,
        username=body.username,
        uses=body.uses,
        expires_in=None if body.expires_in is None else timedelta(seconds=body.expires_in),
    )
    call.target = made.id
    who = made.invite.username or "any name"
    call.detail = f"{who} on {made.invite.domain}, {made.invite.uses_left} use(s)"
    out = _invitation(made.invite, datetime.now(UTC))
    return CreatedInvitation(**out.model_dump(), token=made.token, uri=made.uri)


async def revoke_invitation(call: Call) -> None:
    digest = await invitations.revoke_invitation(call.ctx, call.param("id"))
    call.target = digest[: invitations.ID_LENGTH]


_JID = {"jid": "Bare JID of the pending registration"}

OPERATIONS = (
    Operation(
        "GET",
        "/registration/settings",
        get_settings,
        "Registration settings",
        "registration",
        response=RegistrationSettings,
    ),
    Operation(
        "GET",
        "/registration/pending",
        list_pending,
        "Registrations awaiting approval",
        "registration",
        query=DomainQuery,
        response=PendingList,
        description="Oldest first, with the address and fields each gave.",
    ),
    Operation(
        "POST",
        "/registration/pending/{jid}/approve",
        approve,
        "Approve a registration",
        "registration",
        access=Access.WRITE,
        errors=(409,),
        action="registration.approve",
        params=_JID,
        description="The account can log in at once. 409 when an account of that name exists.",
    ),
    Operation(
        "POST",
        "/registration/pending/{jid}/reject",
        reject,
        "Reject a registration",
        "registration",
        access=Access.WRITE,
        action="registration.reject",
        params=_JID,
        description="Deletes it with everything it holds; the name is free again.",
    ),
    Operation(
        "GET",
        "/invitations",
        list_invitations,
        "List invitations",
        "registration",
        query=DomainQuery,
        response=InvitationList,
    ),
    Operation(
        "POST",
        "/invitations",
        create_invitation,
        "Create an invitation token",
        "registration",
        access=Access.WRITE,
        body=NewInvitation,
        response=CreatedInvitation,
        status=201,
        errors=(404, 409),
        action="invitation.create",
        description="The token is in this answer only (the server stores its hash).",
    ),
    Operation(
        "DELETE",
        "/invitations/{id}",
        revoke_invitation,
        "Revoke an invitation",
        "registration",
        access=Access.WRITE,
        errors=(409,),
        action="invitation.revoke",
        params={"id": "The invitation's id (at least 6 hex digits of it)"},
    ),
)
