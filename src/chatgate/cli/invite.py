"""`chatgate invite`: invitation tokens for in-band registration (XEP-0401/0445).

With `[modules.register] invites = "optional"` or `"required"`, a client may
present a token before registering (XEP-0445 ``<preauth/>``, or the form's
`token` field).  `create` stores a new random token and prints it with the
XEP-0401 account-invitation URI, ``xmpp:DOMAIN?register;preauth=TOKEN`` (or
``xmpp:NAME@DOMAIN?...`` for a token that registers one name only), which
clients that know easy onboarding open directly.

Only the token's SHA-256 is stored, so the token is shown once, at creation;
`list` identifies invitations by the first hex digits of that hash, and `revoke`
takes either the token or such an id.  A running server reads invitations from
the database at each use, so creating or revoking one needs no restart.

Exit codes: 0 done; 1 no such invitation, or the name it would reserve is taken;
2 bad input or configuration (an ambiguous id too).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from chatgate.administration.invitations import new_token, register_uri, state
from chatgate.cli.common import (
    ConfigOption,
    account_domain,
    command_group,
    err_console,
    fail,
    jid,
    load_or_exit,
    module_options,
    plain_console,
    with_db,
)
from chatgate.cli.user import account_service, taken
from chatgate.config import Config
from chatgate.modules.register import RegisterOptions, RegistrationPolicy
from chatgate.storage.database import Database
from chatgate.storage.repositories.invitations import invite_hash
from chatgate.vocabulary.errors import StanzaError

invite_app = command_group("Create, list and revoke invitation tokens for in-band registration.")
console = plain_console()

#: hex digits of the token hash that `list` shows as an invitation's id
ID_LENGTH = 12
#: fewest hex digits `revoke` accepts as an id (fewer look too much like a typo)
MIN_ID_LENGTH = 6

_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_DURATION = re.compile(r"(?:\d+[wdhms])+")


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``1d12h``, ``30m``, ``2w``, ``90s`` -> timedelta.  Raises ValueError."""
    compact = text.strip().lower()
    if not _DURATION.fullmatch(compact):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit, like 7d, 12h, 1d12h")
    total = timedelta()
    for amount, unit in re.findall(r"(\d+)([wdhms])", compact):
        total += timedelta(**{_UNITS[unit]: int(amount)})
    if total <= timedelta():
        raise ValueError(f"invalid duration {text!r}: it must be longer than zero")
    return total


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else moment.strftime("%Y-%m-%d %H:%M")


def _register_notes(cfg: Config, options: RegisterOptions, domain: str) -> list[str]:
    """Why the server would not accept the token as configured, if it would not."""
    notes = []
    if not options.enabled:
        notes.append("[modules.register] enabled is false: nobody can register yet")
    if options.invites == "off":
        notes.append('[modules.register] invites is "off": the server ignores invitations')
    provider = cfg.host(domain).provider or cfg.auth.provider
    if provider.name != "internal":
        notes.append(f"{domain} uses the {provider.name} provider: registration is not allowed")
    return notes


@invite_app.command("create")
def create(
    ctx: typer.Context,
    config: ConfigOption = None,
    uses: Annotated[int, typer.Option(min=1, help="Accounts the token may create.")] = 1,
    expires: Annotated[
        str | None,
        typer.Option(help="Lifetime, like 7d, 12h, 1d12h, 30m (default: never expires)."),
    ] = None,
    username: Annotated[
        str | None,
        typer.Option(help="The only name the token registers; reserved until it is used up."),
    ] = None,
    domain: Annotated[
        str | None, typer.Option(help="Served domain to register on (default: the main domain).")
    ] = None,
) -> None:
    """Store a new random invitation token and print it with its xmpp: URI.

    The token is shown only now (the database keeps its hash).  A token for one
    name is checked against the registration policy (reserved names, length),
    since registration would refuse a name it forbids.
    """
    cfg = load_or_exit(ctx, config)
    options = module_options(cfg, "register", RegisterOptions)
    try:
        where = account_domain(domain, cfg)
        lifetime = None if expires is None else parse_duration(expires)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    name = None
    if username is not None:
        try:
            name = RegistrationPolicy(options).username(username)
        except StanzaError as exc:
            raise fail(f"{username!r}: {exc.text}", 2) from None
    now = datetime.now(UTC)
    until = None if lifetime is None else now + lifetime
    token = new_token()

    async def store(db: Database) -> str | None:
        if name is not None:
            # Held by an account, a registration awaiting approval or another
            # invitation: the account service's one rule.
            holder = await account_service(cfg, db).name_holder(name, where)
            if holder is not None:
                return taken(holder, name, where)
        if not await db.invitations.add_invite(
            token, where, username=name, uses=uses, expires=until
        ):
            raise RuntimeError("a fresh random token collided with a stored one")
        return None

    refused = asyncio.run(with_db(cfg, store))
    if refused:
        raise fail(refused, 1)
    console.print(f"token:   {token}")
    console.print(f"uri:     {register_uri(where, token, name)}")
    console.print(f"id:      {invite_hash(token)[:ID_LENGTH]}")
    console.print(f"for:     {jid(name, where) if name else f'any name on {where}'}")
    console.print(f"uses:    {uses}")
    console.print(f"expires: {'never' if until is None else until.isoformat(timespec='seconds')}")
    for note in _register_notes(cfg, options, where):
        err_console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)


@invite_app.command("list")
def list_(
    ctx: typer.Context,
    config: ConfigOption = None,
    domain: Annotated[str | None, typer.Option(help="Only invitations for this domain.")] = None,
) -> None:
    """List stored invitations, oldest first, usable or not (tokens are not stored:
    the id is the start of the token's hash).  Tokens from `invite_tokens` in the
    configuration appear once the server has stored them, at their first use."""
    cfg = load_or_exit(ctx, config)
    if domain is not None:
        try:
            domain = account_domain(domain, cfg)
        except ValueError as exc:
            raise fail(str(exc), 2) from None
    invites = asyncio.run(with_db(cfg, lambda db: db.invitations.invites(domain)))
    if not invites:
        console.print("no invitations")
        return
    now = datetime.now(UTC)
    table = Table(title="invitations", title_justify="left")
    # Never an ellipsis: ids and names are copied from here.
    table.add_column("id", no_wrap=True, min_width=ID_LENGTH)
    table.add_column("for", overflow="fold")
    table.add_column("uses", justify="right")
    for column in ("expires (UTC)", "state"):
        table.add_column(column, overflow="fold")
    for item in invites:
        who = jid(item.username, item.domain) if item.username else f"*@{item.domain}"
        table.add_row(
            item.token_hash[:ID_LENGTH],
            Text(who),
            str(item.uses_left),
            _when(item.expires),
            state(item, now),
        )
    console.print(table)


@invite_app.command("revoke")
def revoke(
    ctx: typer.Context,
    token: Annotated[
        str,
        typer.Argument(
            help="The token, or its id as `invite list` shows it (after `--` when it"
            " starts with '-': `chatgate invite revoke -- -Hym...`).",
        ),
    ],
    config: ConfigOption = None,
) -> None:
    """Delete an invitation at once: registrations presenting it fail from now on
    (forbidden), even on a stream that presented it before.

    A token starting with '-' (made by an older version, or listed in
    `invite_tokens`) goes after `--`, which ends the options:
    ``chatgate invite revoke --config FILE -- -Hym...``.
    """
    cfg = load_or_exit(ctx, config)
    options = module_options(cfg, "register", RegisterOptions)

    async def remove(db: Database) -> list[str]:
        if await db.invitations.revoke_invite(token):
            return [invite_hash(token)]
        if len(token) < MIN_ID_LENGTH:
            return []
        return await db.invitations.revoke_invite_hash(token.lower())

    matches = asyncio.run(with_db(cfg, remove))
    if not matches:
        raise fail("no such invitation (give the token or an id from `invite list`)", 1)
    if len(matches) > 1:
        raise fail(f"{len(matches)} invitations have ids starting with {token}: give more", 2)
    console.print(f"invitation {matches[0][:ID_LENGTH]} revoked")
    if matches[0] in {invite_hash(t.token) for t in options.invite_tokens}:
        note = (
            "the token is listed in [modules.register] invite_tokens: remove it there,"
            " or the server stores it again after its next start"
        )
        err_console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
