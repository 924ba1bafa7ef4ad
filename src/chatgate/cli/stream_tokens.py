"""`chatgate streams tokens issue` and `revoke`: a signed, expiring token for one
stream and action, and its revocation before it expires (see `cli/streams.py`
for the group)."""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import quote, urlsplit

import typer
from rich.markup import escape

from chatgate.cli.common import (
    ConfigOption,
    command_group,
    err_console,
    fail,
    jid,
    load_or_exit,
    target,
)
from chatgate.cli.invite import parse_duration
from chatgate.cli.streams_support import (
    console,
    disabled_note,
    note,
    require_account,
    run_on_state,
)
from chatgate.storage.database import Database
from chatgate.streams import tokens
from chatgate.streams.policy import InvalidStreamName, Subject, check_stream_name
from chatgate.streams.rulebook import RuleBook
from chatgate.streams.state import StreamState

tokens_app = command_group("Signed, expiring tokens for one stream and action.")
#: longest token lifetime `tokens issue` gives (a revocation is kept as long)
MAX_TTL = timedelta(days=30)

# ------------------------------------------------------------------ tokens


def parse_ttl(text: str) -> timedelta:
    """A token lifetime: ``90s``, ``15m``, ``2h``, ``7d`` (or combined, ``1h30m``),
    at most `MAX_TTL`.  Raises ValueError with the reason."""
    ttl = parse_duration(text)
    if ttl > MAX_TTL:
        raise ValueError(f"--ttl {text!r} is longer than the most, {MAX_TTL.days}d")
    return ttl


def stream_url(base: str, stream: str, token: str) -> str:
    """``BASE/STREAM?token=TOKEN``: the stream percent-encoded where it is not ASCII
    (media servers decode it once), ``/`` kept between segments.  Raises
    ValueError for a base that is not ``scheme://host[/path]``."""
    parts = urlsplit(base)
    if not parts.scheme or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"--url-base must be scheme://host[/app], like rtmp://host/, not {base!r}")
    return f"{base.rstrip('/')}/{quote(stream, safe='/-._~@+:')}?token={token}"


@tokens_app.command("issue")
def tokens_issue(
    ctx: typer.Context,
    stream: Annotated[str, typer.Argument(help="The stream, like live/alice.")],
    action: Annotated[
        tokens.StreamAction,
        typer.Option("--action", "-a", help="What the token allows.", case_sensitive=False),
    ],
    config: ConfigOption = None,
    ttl: Annotated[
        str, typer.Option("--ttl", help="Lifetime: 90s, 15m, 2h, 7d (at most 30d).")
    ] = "1h",
    address: Annotated[
        str | None,
        typer.Option("--address", help="Bind the token to this client IP address."),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", help="The account the token is for (named in the server's log)."),
    ] = None,
    url_base: Annotated[
        str | None,
        typer.Option("--url-base", help="Also print BASE/STREAM?token=..., e.g. rtmp://host/."),
    ] = None,
    one_time: Annotated[
        bool,
        typer.Option(
            "--one-time",
            help="Good for one media-server session only (its renewals included).",
        ),
    ] = False,
) -> None:
    """Print a token that lets its holder publish or play one stream until it expires.

    The token is signed with the installation's newest token key and works only
    for this stream and action (and the address, with --address) where a rule
    grants 'token' on the stream.  It cannot be revoked by itself: keep --ttl short.
    """
    cfg = load_or_exit(ctx, config)
    try:
        check_stream_name(stream)
        lifetime = parse_ttl(ttl)
        if address is not None:
            ipaddress.ip_address(address)
        if url_base is not None:
            stream_url(url_base, stream, "")
    except (InvalidStreamName, ValueError) as exc:
        raise fail(str(exc), 2) from None
    who: tuple[str, str] | None = target(user, cfg) if user is not None else None

    async def issue(db: Database, state: StreamState) -> tuple[str, int, bool]:
        if who is not None:
            await require_account(db, *who)
        rules = await RuleBook(cfg.streams.rules, state.rules).current()
        honoured = rules.decide(Subject.token_bearer(stream, action), stream, action).allowed
        if not state.token_keys:
            raise fail("no stream token key in this installation", 1)
        key_id = max(state.token_keys)
        expires_at = int(time.time() + lifetime.total_seconds())
        try:
            token = tokens.issue(
                state.token_keys,
                key_id,
                stream,
                action,
                expires_at,
                address=address,
                user=jid(*who) if who is not None else None,
                one_time=one_time,
            )
        except ValueError as exc:
            raise fail(str(exc), 2) from None
        return token, expires_at, honoured

    token, expires_at, honoured = run_on_state(cfg, issue)
    typer.echo(token)  # never wrapped: copied into URLs
    if url_base is not None:
        typer.echo(stream_url(url_base, stream, token))
    until = datetime.fromtimestamp(expires_at, UTC)
    bound = f", from {address} only" if address else ""
    once = ", once" if one_time else ""
    err_console.print(
        f"{action.value} {escape(stream)} until {until:%Y-%m-%d %H:%M:%S} UTC{escape(bound)}{once}",
        highlight=False,
        soft_wrap=True,
    )
    if not honoured:
        note(
            f"no rule honours tokens to {action.value} {stream} (a 'token' or 'anonymous'"
            " grantee on a matching pattern): media servers will refuse this token until one does"
        )
    disabled_note(cfg)


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context,
    token: Annotated[str, typer.Argument(help="The token, as issued.")],
    config: ConfigOption = None,
) -> None:
    """Revoke a token before it expires: media servers refuse it from the next
    hook on (a live play or publish with it ends at its next renewal)."""
    cfg = load_or_exit(ctx, config)

    async def revoke(db: Database, state: StreamState) -> tuple[bool, int, str]:
        known = tokens.identify(token.strip(), state.token_keys)
        if not known.valid or known.token_id is None or known.expires_at is None:
            raise fail(f"not a token of this installation ({known.reason.value})", 2)
        added = await state.revoked.revoke(known.token_id, known.expires_at)
        return added, known.expires_at, known.token_id

    added, expires_at, token_id = run_on_state(cfg, revoke)
    if expires_at <= time.time():
        console.print(f"token {token_id} had expired already")
    elif added:
        until = datetime.fromtimestamp(expires_at, UTC)
        console.print(
            f"token {token_id} revoked (it would have expired {until:%Y-%m-%d %H:%M} UTC)"
        )
    else:
        console.print(f"token {token_id} was revoked already")
    disabled_note(cfg)
