"""The stream authority as an operator manages it (`chatgate streams` does the
same from the command line): rules, per-account stream keys, tokens and the
live streams.  Everything works on the running server's `ctx.streams`; with
`[streams] enabled = false` there is none and every operation is Unavailable.

Rules from `chatgate.toml` are listed but changed only in that file; stored
rules apply at once (the stores raise the authority's change signal).  A stream
key is shown once, when issued; afterwards only its id.  Tokens are signed and
expiring, for one stream and action, and can be revoked before they expire.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatgate.administration.errors import Conflict, Invalid, NotFound, Unavailable
from chatgate.administration.targets import account_jid
from chatgate.streams import tokens
from chatgate.streams.live import LiveStream
from chatgate.streams.policy import InvalidStreamName, Rule, check_stream_name
from chatgate.streams.rule_store import MAX_RULE_LENGTH
from chatgate.streams.stores import KeyInfo

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.streams.service import StreamService

#: the longest a token may live, as `chatgate streams tokens issue --ttl`
MAX_TOKEN_TTL = 30 * 86400


def service(ctx: ServerContext) -> StreamService:
    if ctx.streams is None:
        raise Unavailable("the stream authority is off ([streams] enabled = false)")
    return ctx.streams


@dataclass(frozen=True, slots=True)
class RuleView:
    text: str
    #: `config` (chatgate.toml, read only) or `stored`
    source: str
    #: why a stored rule no longer parses (it is ignored), else None
    invalid: str | None = None


async def rules(ctx: ServerContext) -> list[RuleView]:
    """The configured rules, then the stored ones."""
    state = service(ctx).state
    listed = [RuleView(text, "config") for text in ctx.config.streams.rules]
    for text in await state.rules.rules():
        try:
            Rule.parse(text)
            listed.append(RuleView(text, "stored"))
        except ValueError as exc:
            listed.append(RuleView(text, "stored", str(exc)))
    return listed


def _parse_rule(text: str) -> Rule:
    try:
        return Rule.parse(text)
    except ValueError as exc:
        raise Invalid(f"invalid rule: {exc}", "rule") from None


async def add_rule(ctx: ServerContext, text: str) -> str:
    """Store a rule in its canonical spelling; Invalid when it does not parse or is
    too long, Conflict when it is configured or stored already."""
    state = service(ctx).state
    parsed = _parse_rule(text)
    canonical = str(parsed)
    if len(canonical) > MAX_RULE_LENGTH:
        raise Invalid(f"rules have at most {MAX_RULE_LENGTH} characters", "rule")
    if any(_same(c, parsed) for c in ctx.config.streams.rules):
        raise Conflict(f"{canonical!r} is configured in chatgate.toml already")
    for stored in await state.rules.rules():
        if stored == canonical or _same(stored, parsed):
            raise Conflict(f"{canonical!r} is stored already")
    if not await state.rules.add(canonical):
        raise Conflict(f"{canonical!r} is stored already")
    return canonical


def _same(text: str, rule: Rule) -> bool:
    try:
        return Rule.parse(text) == rule
    except ValueError:
        return False


async def remove_rule(ctx: ServerContext, text: str) -> list[str]:
    """Remove the stored rule written `text` (or any spelling of it); returns what
    was removed.  NotFound when no stored rule matches (configured ones are
    changed in chatgate.toml)."""
    state = service(ctx).state
    stored = await state.rules.rules()
    if text in stored:
        matches = [text]
    else:
        parsed = _parse_rule(text)
        matches = [s for s in stored if _same(s, parsed)]
    removed = [m for m in matches if await state.rules.remove(m)]
    if not removed:
        if any(c == text or _same(c, _parse_rule(text)) for c in ctx.config.streams.rules):
            raise Conflict("that rule is configured in chatgate.toml: edit the file to remove it")
        raise NotFound(f"no stored rule {text!r}")
    return removed


async def keys(ctx: ServerContext) -> list[KeyInfo]:
    """Every account with a stream key (its id, never the key)."""
    return await service(ctx).state.keys.listing()


async def issue_key(ctx: ServerContext, jid: str) -> tuple[str, str]:
    """A new random stream key for the account, replacing any it had: (key, key id).
    The key is shown only now.  NotFound when there is no such account."""
    stream_keys = service(ctx).state.keys
    username, domain = account_jid(ctx, jid)
    if not await ctx.db.accounts.exists(username, domain):
        raise NotFound(f"no such account {username}@{domain}")
    key = await stream_keys.issue(f"{username}@{domain}")
    owner = await stream_keys.owner(key)
    return key, owner.key_id if owner is not None else ""


async def revoke_key(ctx: ServerContext, jid: str) -> str:
    """Remove the account's stream key; returns its id.  NotFound when it has none."""
    stream_keys = service(ctx).state.keys
    username, domain = account_jid(ctx, jid)
    owner = await stream_keys.revoke(f"{username}@{domain}")
    if owner is None:
        raise NotFound(f"{username}@{domain} has no stream key")
    return owner.key_id


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    token_id: str
    expires_at: int


async def issue_token(
    ctx: ServerContext,
    stream: str,
    action: tokens.StreamAction,
    ttl: int,
    *,
    address: str | None = None,
    user: str | None = None,
    one_time: bool = False,
) -> IssuedToken:
    """A token for `action` on `stream` for `ttl` seconds, signed with the newest
    token key.  Invalid for a bad stream name, lifetime, address or user."""
    state = service(ctx).state
    try:
        check_stream_name(stream)
    except InvalidStreamName as exc:
        raise Invalid(str(exc), "stream") from None
    if not 1 <= ttl <= MAX_TOKEN_TTL:
        raise Invalid(f"ttl is 1 to {MAX_TOKEN_TTL} seconds", "ttl")
    if address is not None:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise Invalid("not an IP address", "address") from None
    who = None
    if user is not None:
        username, domain = account_jid(ctx, user, "user")
        if not await ctx.db.accounts.exists(username, domain):
            raise Invalid(f"no such account {username}@{domain}", "user")
        who = f"{username}@{domain}"
    if not state.token_keys:
        raise Unavailable("no stream token key in this installation")
    expires_at = int(time.time()) + ttl
    try:
        token = tokens.issue(
            state.token_keys,
            max(state.token_keys),
            stream,
            action,
            expires_at,
            address=address,
            user=who,
            one_time=one_time,
        )
    except ValueError as exc:
        raise Invalid(str(exc), "stream") from None
    known = tokens.identify(token, state.token_keys)
    return IssuedToken(token, known.token_id or "", expires_at)


async def revoke_token(ctx: ServerContext, token: str) -> tuple[str, bool]:
    """Revoke an issued token before it expires: (its id, whether this revoked it:
    False when it was revoked already or had expired).  Invalid when it is not a
    token of this installation."""
    state = service(ctx).state
    known = tokens.identify(token.strip(), state.token_keys)
    if not known.valid or known.token_id is None or known.expires_at is None:
        raise Invalid(f"not a token of this installation ({known.reason.value})", "token")
    if known.expires_at <= time.time():
        return known.token_id, False
    return known.token_id, await state.revoked.revoke(known.token_id, known.expires_at)


async def live(ctx: ServerContext) -> list[LiveStream]:
    """The published streams with their viewer counts (this process's registry)."""
    return await service(ctx).live.live()
