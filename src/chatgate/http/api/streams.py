"""`/streams`: the stream authority's rules, keys, tokens and live streams
(404 `not_configured` when `[streams] enabled` is false)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field

from chatgate.administration import streams
from chatgate.http.api.models import Model
from chatgate.http.api.operation import Call, Operation
from chatgate.http.auth.base import Access
from chatgate.streams.rule_store import MAX_RULE_LENGTH
from chatgate.streams.tokens import StreamAction

RULE = Annotated[str, Field(min_length=1, max_length=MAX_RULE_LENGTH)]


class RuleOut(Model):
    rule: str
    source: Literal["config", "stored"]
    """`config` rules change only in chatgate.toml."""
    invalid: str | None
    """Why a stored rule is ignored (it no longer parses)."""


class RuleList(Model):
    items: list[RuleOut]


class NewRule(Model):
    rule: RULE
    """ACTIONS PATTERN GRANTEE, e.g. `publish,play live/* group:staff`."""


class StreamKeyOut(Model):
    account: str
    key_id: str
    created: datetime


class StreamKeyList(Model):
    items: list[StreamKeyOut]


class IssuedKey(Model):
    account: str
    key_id: str
    key: str
    """The stream key: shown only now."""


class NewToken(Model):
    stream: Annotated[str, Field(min_length=1, max_length=1024)]
    action: Literal["publish", "play"]
    ttl: Annotated[int, Field(ge=1, le=streams.MAX_TOKEN_TTL)] = 3600
    """Seconds the token works for."""
    address: Annotated[str | None, Field(max_length=64)] = None
    """Bind the token to this client IP address."""
    user: Annotated[str | None, Field(max_length=3071)] = None
    """The account the token is for (a bare JID)."""
    one_time: bool = False


class IssuedTokenOut(Model):
    token: str
    token_id: str
    expires_at: datetime


class TokenToRevoke(Model):
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class RevokedTokenOut(Model):
    token_id: str
    revoked: bool
    """False when it was revoked already or had expired."""


class LiveStreamOut(Model):
    stream: str
    publisher: str | None
    client_id: str
    node: str
    started_at: datetime
    last_seen: datetime
    confirmed: bool
    viewers: int


class LiveList(Model):
    items: list[LiveStreamOut]


def _when(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


async def list_rules(call: Call) -> RuleList:
    return RuleList(
        items=[
            RuleOut(rule=r.text, source=r.source, invalid=r.invalid)  # type: ignore[arg-type]
            for r in await streams.rules(call.ctx)
        ]
    )


async def add_rule(call: Call) -> RuleOut:
    call.target = await streams.add_rule(call.ctx, call.body_as(NewRule).rule)
    return RuleOut(rule=call.target, source="stored", invalid=None)


async def remove_rule(call: Call) -> None:
    removed = await streams.remove_rule(call.ctx, call.body_as(NewRule).rule)
    call.target = ", ".join(removed)


async def list_keys(call: Call) -> StreamKeyList:
    return StreamKeyList(
        items=[
            StreamKeyOut(account=k.account, key_id=k.key_id, created=_when(k.created_at))
            for k in await streams.keys(call.ctx)
        ]
    )


async def issue_key(call: Call) -> IssuedKey:
    jid = call.param("jid")
    key, key_id = await streams.issue_key(call.ctx, jid)
    call.target, call.detail = jid, f"key {key_id}"
    return IssuedKey(account=jid, key_id=key_id, key=key)


async def revoke_key(call: Call) -> None:
    call.target = call.param("jid")
    call.detail = f"key {await streams.revoke_key(call.ctx, call.target)}"


async def issue_token(call: Call) -> IssuedTokenOut:
    body = call.body_as(NewToken)
    issued = await streams.issue_token(
        call.ctx,
        body.stream,
        StreamAction(body.action),
        body.ttl,
        address=body.address,
        user=body.user,
        one_time=body.one_time,
    )
    call.target = issued.token_id
    call.detail = f"{body.action} {body.stream} for {body.ttl} s"
    return IssuedTokenOut(
        token=issued.token, token_id=issued.token_id, expires_at=_when(issued.expires_at)
    )


async def revoke_token(call: Call) -> RevokedTokenOut:
    token_id, revoked = await streams.revoke_token(call.ctx, call.body_as(TokenToRevoke).token)
    call.target = token_id
    return RevokedTokenOut(token_id=token_id, revoked=revoked)


async def list_live(call: Call) -> LiveList:
    return LiveList(
        items=[
            LiveStreamOut(
                stream=s.stream,
                publisher=s.publisher,
                client_id=s.client_id,
                node=s.node,
                started_at=_when(s.started_at),
                last_seen=_when(s.last_seen),
                confirmed=s.confirmed,
                viewers=s.viewers,
            )
            for s in await streams.live(call.ctx)
        ]
    )


_OFF = "404 `not_configured` when `[streams] enabled` is false."

OPERATIONS = (
    Operation(
        "GET",
        "/streams/rules",
        list_rules,
        "List stream rules",
        "streams",
        response=RuleList,
        errors=(404,),
        description=f"chatgate.toml's rules, then the stored ones. {_OFF}",
    ),
    Operation(
        "POST",
        "/streams/rules",
        add_rule,
        "Store a stream rule",
        "streams",
        access=Access.WRITE,
        body=NewRule,
        response=RuleOut,
        status=201,
        errors=(404, 409),
        action="stream_rule.add",
        description=f"Applies at once; stored in its canonical spelling. {_OFF}",
    ),
    Operation(
        "POST",
        "/streams/rules/remove",
        remove_rule,
        "Remove a stored stream rule",
        "streams",
        access=Access.WRITE,
        body=NewRule,
        errors=(404, 409),
        action="stream_rule.remove",
        description="Any spelling of the rule finds it (a body, not a path: rules hold"
        f" '/' and '*'). {_OFF}",
    ),
    Operation(
        "GET",
        "/streams/keys",
        list_keys,
        "List stream keys",
        "streams",
        response=StreamKeyList,
        errors=(404,),
        description=f"Accounts with a stream key: its id, never the key. {_OFF}",
    ),
    Operation(
        "POST",
        "/streams/keys/{jid}",
        issue_key,
        "Issue an account's stream key",
        "streams",
        access=Access.WRITE,
        response=IssuedKey,
        status=201,
        action="stream_key.issue",
        params={"jid": "Bare JID of the account"},
        description=f"A new random key replacing any the account had; shown only now. {_OFF}",
    ),
    Operation(
        "DELETE",
        "/streams/keys/{jid}",
        revoke_key,
        "Revoke an account's stream key",
        "streams",
        access=Access.WRITE,
        action="stream_key.revoke",
        params={"jid": "Bare JID of the account"},
    ),
    Operation(
        "POST",
        "/streams/tokens",
        issue_token,
        "Issue a stream token",
        "streams",
        access=Access.WRITE,
        body=NewToken,
        response=IssuedTokenOut,
        status=201,
        errors=(404,),
        action="stream_token.issue",
        description="Signed, expiring, for one stream and action; honoured where a rule"
        f" grants `token`. {_OFF}",
    ),
    Operation(
        "POST",
        "/streams/tokens/revoke",
        revoke_token,
        "Revoke a stream token",
        "streams",
        access=Access.WRITE,
        body=TokenToRevoke,
        response=RevokedTokenOut,
        errors=(404,),
        action="stream_token.revoke",
    ),
    Operation(
        "GET",
        "/streams/live",
        list_live,
        "List live streams",
        "streams",
        response=LiveList,
        errors=(404,),
        description=f"Published streams with their viewers (this process). {_OFF}",
    ),
)
