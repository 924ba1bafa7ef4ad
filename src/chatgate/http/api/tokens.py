"""`/tokens`: bearer tokens for automation (administrators only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field

from chatgate.administration.errors import Invalid, NotFound
from chatgate.http.api.models import Model
from chatgate.http.api.operation import Call, Operation
from chatgate.http.auth.base import Access
from chatgate.storage.repositories.admin import AdminTokenRow

Group = Literal["admin", "advUser", "readOnly"]


class TokenOut(Model):
    id: str
    label: str
    groups: list[str]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class TokenList(Model):
    items: list[TokenOut]


class NewBearerToken(Model):
    label: Annotated[str, Field(min_length=1, max_length=200)]
    groups: Annotated[list[Group], Field(min_length=1, max_length=3)]
    ttl: Annotated[int | None, Field(ge=60, le=10 * 366 * 86400)] = None
    """Seconds the token works for; never expires when absent."""


class CreatedToken(TokenOut):
    token: str
    """The bearer token: shown only now."""


def _when(unix: int | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)


def token_out(row: AdminTokenRow) -> TokenOut:
    return TokenOut(
        id=row.id,
        label=row.label,
        groups=list(row.groups),
        created_by=row.created_by,
        created_at=datetime.fromtimestamp(row.created_at, UTC),
        expires_at=_when(row.expires_at),
        last_used_at=_when(row.last_used_at),
    )


async def list_tokens(call: Call) -> TokenList:
    return TokenList(items=[token_out(r) for r in await call.site.tokens.list()])


async def create_token(call: Call) -> CreatedToken:
    body = call.body_as(NewBearerToken)
    try:
        token, row = await call.site.tokens.create(
            body.label, body.groups, call.principal.actor, body.ttl
        )
    except ValueError as exc:  # InvalidAdmin is one
        raise Invalid(str(exc), "label") from None
    call.target = row.id
    call.detail = f"{row.label!r}, groups {','.join(row.groups)}"
    return CreatedToken(**token_out(row).model_dump(), token=token)


async def revoke_token(call: Call) -> None:
    token_id = call.param("id")
    if not await call.site.tokens.revoke(token_id):
        raise NotFound(f"no token {token_id}")
    call.target = token_id


OPERATIONS = (
    Operation(
        "GET",
        "/tokens",
        list_tokens,
        "List bearer tokens",
        "tokens",
        access=Access.ADMIN,
        response=TokenList,
    ),
    Operation(
        "POST",
        "/tokens",
        create_token,
        "Create a bearer token",
        "tokens",
        access=Access.ADMIN,
        body=NewBearerToken,
        response=CreatedToken,
        status=201,
        action="token.create",
        description="The token (`cg_ID_SECRET`) is in this answer only; send it as"
        " `Authorization: Bearer TOKEN`.",
    ),
    Operation(
        "DELETE",
        "/tokens/{id}",
        revoke_token,
        "Revoke a bearer token",
        "tokens",
        access=Access.ADMIN,
        action="token.revoke",
        params={"id": "The token's id (12 hex digits)"},
    ),
)
