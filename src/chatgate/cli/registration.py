"""`chatgate registration`: the administrator's side of `[modules.register] approval`.

With approval on, an in-band registration succeeds but is held in
`pending_registrations` (the name is taken, logging in fails) until an
administrator runs `approve` or `reject` here, through the account service
(`chatgate.accounts`), as the admin API does.  A pending registration already
holds everything the account needs (SCRAM keys, the configured legacy secrets,
the registration fields), so approving only moves it into the accounts table.

A running server learns about an approval or a rejection without a restart: both
bump the credentials stamp, on which it reloads the accounts and the pending
names it keeps in memory (a name it still holds as pending is checked against
the database at its next login anyway).

Exit codes: 0 done; 1 no registration of that name is pending (or an account of
that name exists); 2 bad input or configuration.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from chatgate.accounts import NameTaken
from chatgate.cli.common import (
    ConfigOption,
    UserArgument,
    account_domain,
    command_group,
    fail,
    jid,
    load_or_exit,
    plain_console,
    target,
    with_db,
)
from chatgate.cli.user import account_service

registration_app = command_group("Approve or reject in-band registrations awaiting approval.")
console = plain_console()


@registration_app.command("pending")
def pending(
    ctx: typer.Context,
    config: ConfigOption = None,
    domain: Annotated[str | None, typer.Option(help="Only registrations on this domain.")] = None,
) -> None:
    """List registrations awaiting approval, oldest first: who, when (UTC), from which
    address, and the registration fields they gave, so an administrator can decide."""
    cfg = load_or_exit(ctx, config)
    if domain is not None:
        try:
            domain = account_domain(domain, cfg)
        except ValueError as exc:
            raise fail(str(exc), 2) from None
    waiting = asyncio.run(with_db(cfg, lambda db: db.pending_registrations.pending(domain)))
    if not waiting:
        console.print("no registrations awaiting approval")
        return
    table = Table(title="registrations awaiting approval", title_justify="left")
    for column in ("user", "requested (UTC)", "from", "fields"):
        table.add_column(column, overflow="fold")  # never an ellipsis: names are copied
    for item in waiting:
        fields = ", ".join(f"{k}={v}" for k, v in item.fields.items())
        table.add_row(
            Text(jid(item.username, item.domain)),
            item.created.strftime("%Y-%m-%d %H:%M:%S"),
            Text(item.address or "-"),
            Text(fields or "-"),
        )
    console.print(table)


@registration_app.command("approve")
def approve(ctx: typer.Context, user: UserArgument, config: ConfigOption = None) -> None:
    """Turn a pending registration into an account; it can log in at once, also on a
    running server.  Exits 1 when no registration of that name is pending."""
    cfg = load_or_exit(ctx, config)
    username, domain = target(user, cfg)
    try:
        approved = asyncio.run(
            with_db(cfg, lambda db: account_service(cfg, db).approve(username, domain))
        )
    except NameTaken:
        message = f"an account {jid(username, domain)} exists already; reject the registration"
        raise fail(message, 1) from None
    if not approved:
        raise fail(f"no registration of {jid(username, domain)} is pending", 1)
    console.print(f"{jid(username, domain)} approved: the account can log in now")


@registration_app.command("reject")
def reject(ctx: typer.Context, user: UserArgument, config: ConfigOption = None) -> None:
    """Delete a pending registration with everything it holds (keys, legacy secrets,
    fields); the name is free again at once.  Exits 1 when none is pending."""
    cfg = load_or_exit(ctx, config)
    username, domain = target(user, cfg)
    rejected = asyncio.run(
        with_db(cfg, lambda db: account_service(cfg, db).reject(username, domain))
    )
    if not rejected:
        raise fail(f"no registration of {jid(username, domain)} is pending", 1)
    console.print(f"registration of {jid(username, domain)} rejected and deleted")
