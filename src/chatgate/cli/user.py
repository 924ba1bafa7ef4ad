"""`chatgate user`: add, change, lock, delete, list and bulk-import accounts of the internal store.

Every change goes through the account service (`chatgate.accounts`), as in-band
registration's and the admin API's do: the same rules, stored the same way, and
every credential cache told.

Passwords come from a hidden, confirmed prompt or from one line of standard
input (``--password-stdin``), never from the command line (argv is visible to
every local user).  Names and passwords pass the account policy in-band
registration applies (`auth/policy.py`, configured in ``[modules.register]``):
the minimum password length, the username lengths and the reserved names
(`user add --allow-reserved` makes one of those on purpose); a password over
1,024 bytes is refused before it is prepared.  A password set here stores
exactly what in-band registration and an in-band password change store:
SCRAM keys, and the legacy
secrets `[modules.legacy_auth]` asks for (`derive_legacy_secrets`), written
together through `RegistrationRepository`, so an account made here can log in with
legacy digest or zero-knowledge too, and a new password starts a fresh
zero-knowledge chain.  After every change the credentials stamp is bumped so a
running server drops its cached keys (the service's `LocalCredentialsChanged`).

`user lock` stops every login of an account until `user unlock`; the account keeps
everything it owns.  A client that proves the password is told the account is
locked (SASL account-disabled), anyone else gets what a wrong password gets.
Sessions already open on a running server stay open until they end (as after
`user del`); `user list` marks locked accounts.

Accounts live on any served domain (`NAME@DOMAIN`) except an anonymous host.

Exit codes: 0 done (locking a locked account, unlocking an unlocked one, too); 1
the account already exists (or its name is held by a pending registration or an
invitation) / does not exist / deletion declined at the prompt; 2 bad input or
configuration.  `user import` is all or nothing: a
file with a malformed line, or a line the policy refuses, creates nothing and
exits 2; one whose names are held creates nothing and exits 1.

`user del` asks before deleting when standard input is a terminal (``--yes``
skips the question); without a terminal (a script, a pipe) it deletes at once,
as it always did.

`user import` reads its file strictly and is all or nothing; how, and how it
spreads key derivation over a process pool: `cli/accounts_import.py`.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chatgate.accounts import (
    AccountRules,
    AccountService,
    CredentialsChanged,
    LocalCredentialsChanged,
    NameHolder,
    NameTaken,
    NoSuchAccount,
    PasswordRecipe,
)
from chatgate.auth.internal import bump_credentials_stamp
from chatgate.auth.policy import AccountPolicy, NameUnavailable, PolicyViolation
from chatgate.cli.accounts_import import (
    ImportFormat,
    ImportPlan,
    ImportResult,
    Rejected,
    detect_format,
    import_accounts,
    parse_import,
    plan_import,
    start_derivation_pool,
)
from chatgate.cli.common import (
    ConfigOption,
    UserArgument,
    command_group,
    err_console,
    fail,
    jid,
    load_or_exit,
    module_options,
    not_announced,
    plain_console,
    target,
    with_db,
)
from chatgate.config import Config
from chatgate.modules.legacy_auth import LegacyAuthOptions
from chatgate.modules.register import RegisterOptions
from chatgate.storage.database import Database

user_app = command_group("Manage accounts in the internal store.")
console = plain_console()

PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from one line of standard input."),
]


# ------------------------------------------------------------------ helpers


def account_policy(cfg: Config) -> AccountPolicy:
    """The account rules in-band registration applies (`[modules.register]`); invalid
    options exit 2, as they stop the server."""
    return module_options(cfg, "register", RegisterOptions).account_policy()


def _read_password(from_stdin: bool, policy: AccountPolicy) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        return policy.password(password)
    except PolicyViolation as exc:
        raise fail(f"{exc} ([modules.register] min_password_length)", 2) from None


def _check_name(policy: AccountPolicy, username: str, domain: str, allow_reserved: bool) -> None:
    """Exit 2 unless the policy lets `username` be created (the lengths, the reserved names)."""
    try:
        policy.username(username, allow_reserved=allow_reserved)
    except NameUnavailable as exc:
        raise fail(
            f"{jid(username, domain)}: {exc}: the name is reserved ([modules.register]"
            " reserved_usernames); pass --allow-reserved to create it anyway",
            2,
        ) from None
    except PolicyViolation as exc:
        raise fail(f"{jid(username, domain)}: {exc} ([modules.register])", 2) from None


def _legacy_options(cfg: Config) -> LegacyAuthOptions:
    """Which legacy secrets a password set stores (`[modules.legacy_auth]`)."""
    return module_options(cfg, "legacy_auth", LegacyAuthOptions)


def account_rules(cfg: Config) -> AccountRules:
    """The configured rules: `[modules.register]`'s account policy, and what a password
    stores (`[auth] scram_iterations`, `[modules.legacy_auth]`); invalid options exit 2."""
    recipe = PasswordRecipe(cfg.auth.scram_iterations, _legacy_options(cfg))
    return AccountRules(account_policy(cfg), recipe)


def account_service(cfg: Config, db: Database, rules: AccountRules | None = None) -> AccountService:
    """The account service as the command line runs it: changes reach a running server
    through the credentials stamp, and its open sessions at their next login."""
    changed: CredentialsChanged = LocalCredentialsChanged(cfg.data_dir)
    if cfg.cluster.enabled:  # and every node of the cluster, over its Redis
        from chatgate.cluster.notify import CommandLineCredentialsChanged

        changed = CommandLineCredentialsChanged(cfg.cluster, LocalCredentialsChanged(cfg.data_dir))
    return AccountService(db, rules or account_rules(cfg), changed)


def taken(holder: NameHolder | None, username: str, domain: str) -> str:
    """Why username@domain cannot be created, in the command line's words."""
    who = jid(username, domain)
    if holder is NameHolder.ACCOUNT:
        return f"user {who} already exists"
    if holder is NameHolder.PENDING:
        return f"{who} is awaiting approval: `chatgate registration approve` or `reject` it first"
    if holder is NameHolder.INVITATION:
        return f"{who} is reserved by an invitation: `chatgate invite revoke` it first"
    return f"{who} is taken"


# ----------------------------------------------------------------- commands


@user_app.command("add")
def add(
    ctx: typer.Context,
    user: UserArgument,
    config: ConfigOption = None,
    password_stdin: PasswordStdin = False,
    allow_reserved: Annotated[
        bool,
        typer.Option(
            "--allow-reserved",
            help="Create a name that modules.register reserved_usernames reserves"
            " (admin, root...) on purpose.",
        ),
    ] = False,
) -> None:
    """Create an account; the password is asked twice (or read with --password-stdin).

    Stores SCRAM keys and the legacy secrets that modules.legacy_auth asks for, as
    in-band registration does, under the same account policy (password length,
    username length, reserved names).  A name held by a pending registration or
    reserved by an invitation is refused like an existing account (exit 1).
    """
    cfg = load_or_exit(ctx, config)
    rules = account_rules(cfg)
    username, domain = target(user, cfg)
    _check_name(rules.policy, username, domain, allow_reserved)
    holder = asyncio.run(
        with_db(cfg, lambda db: account_service(cfg, db, rules).name_holder(username, domain))
    )
    if holder is not None:
        raise fail(taken(holder, username, domain), 1)
    password = _read_password(password_stdin, rules.policy)

    async def create(db: Database) -> str | None:
        service = account_service(cfg, db, rules)
        try:
            await service.create(username, domain, password, allow_reserved=allow_reserved)
        except NameTaken as exc:  # taken meanwhile
            return taken(exc.holder, username, domain)
        return None

    refused = asyncio.run(with_db(cfg, create))
    if refused:
        raise fail(refused, 1)
    console.print(f"user {jid(username, domain)} created")


@user_app.command("passwd")
def passwd(
    ctx: typer.Context,
    user: UserArgument,
    config: ConfigOption = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a new password; every stored key and legacy secret of the old one is replaced.

    As an in-band password change: new SCRAM keys, new legacy secrets (the
    zero-knowledge chain starts over with a new token), in one transaction.
    Sessions already open stay open; the next login needs the new password.
    """
    cfg = load_or_exit(ctx, config)
    rules = account_rules(cfg)
    username, domain = target(user, cfg)
    if not asyncio.run(
        with_db(cfg, lambda db: account_service(cfg, db, rules).exists(username, domain))
    ):
        raise fail(f"no such user {jid(username, domain)}", 1)
    password = _read_password(password_stdin, rules.policy)
    try:
        asyncio.run(
            with_db(
                cfg,
                lambda db: account_service(cfg, db, rules).change_password(
                    username, domain, password
                ),
            )
        )
    except NoSuchAccount:
        raise fail(f"no such user {jid(username, domain)}", 1) from None
    console.print(f"password of {jid(username, domain)} changed")


def on_a_terminal() -> bool:
    """Whether someone can answer a question: standard input is a terminal."""
    return sys.stdin.isatty()


@user_app.command("del")
def delete(
    ctx: typer.Context,
    user: UserArgument,
    config: ConfigOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking, even on a terminal.")
    ] = False,
) -> None:
    """Delete an account and everything it owns, as in-band <remove/> does.

    Keys, legacy secrets, registration fields, roster, subscription requests,
    offline messages and vCard go in one statement (the database cascades); a
    registration of the name still awaiting approval is dropped too, so the name
    is free at once.  Sessions open on a running server stay open until they end,
    and contacts are not sent the unsubscriptions an in-band removal sends.

    On a terminal it asks first (--yes does not); without one (scripts, pipes)
    it deletes at once.  Declining exits 1 and deletes nothing.
    """
    cfg = load_or_exit(ctx, config)
    rules = account_rules(cfg)
    username, domain = target(user, cfg)
    if not yes and on_a_terminal():
        holder = asyncio.run(
            with_db(cfg, lambda db: account_service(cfg, db, rules).name_holder(username, domain))
        )
        if holder not in (NameHolder.ACCOUNT, NameHolder.PENDING):
            raise fail(f"no such user {jid(username, domain)}", 1)
        exists = holder is NameHolder.ACCOUNT
        thing = "the account" if exists else "the pending registration"
        question = (
            f"Delete {thing} {jid(username, domain)}"
            + (" with its roster, offline messages and vCard" if exists else "")
            + "? This cannot be undone"
        )
        if not typer.confirm(question, default=False, err=True):
            raise fail(f"{jid(username, domain)} not deleted", 1)

    deletion = asyncio.run(
        with_db(cfg, lambda db: account_service(cfg, db, rules).delete(username, domain))
    )
    if not deletion.account and not deletion.pending:
        raise fail(f"no such user {jid(username, domain)}", 1)
    if deletion.account:
        console.print(f"user {jid(username, domain)} deleted")
    if deletion.pending:
        console.print(f"pending registration of {jid(username, domain)} deleted")


@user_app.command("lock")
def lock(ctx: typer.Context, user: UserArgument, config: ConfigOption = None) -> None:
    """Stop every login of an account until `chatgate user unlock`.

    The account keeps its roster, offline messages and vCard, and messages to it
    are still stored.  A client that proves the password is told the account is
    locked (SASL account-disabled); anyone else gets what a wrong password gets.
    Sessions already open on a running server stay open until they end.  Locking
    a locked account changes nothing (exit 0).
    """
    _set_lock(ctx, user, config, locked=True)


@user_app.command("unlock")
def unlock(ctx: typer.Context, user: UserArgument, config: ConfigOption = None) -> None:
    """Let a locked account log in again, at once, also on a running server."""
    _set_lock(ctx, user, config, locked=False)


def _set_lock(ctx: typer.Context, user: str, config: Path | None, *, locked: bool) -> None:
    cfg = load_or_exit(ctx, config)
    username, domain = target(user, cfg)

    async def change(db: Database) -> bool:
        service = account_service(cfg, db)
        return await (service.lock if locked else service.unlock)(username, domain)

    try:
        changed = asyncio.run(with_db(cfg, change))
    except NoSuchAccount:
        raise fail(f"no such user {jid(username, domain)}", 1) from None
    state = "locked" if locked else "unlocked"
    if changed:
        console.print(f"user {jid(username, domain)} {state}")
    else:
        console.print(f"user {jid(username, domain)} was {state} already")


@user_app.command("list")
def list_(
    ctx: typer.Context,
    config: ConfigOption = None,
    domain: Annotated[str | None, typer.Option(help="Only accounts of this domain.")] = None,
) -> None:
    """Print every account's bare JID, one per line, sorted by domain then name; a
    locked account's is followed by ``(locked)``."""
    cfg = load_or_exit(ctx, config)
    accounts = asyncio.run(with_db(cfg, lambda db: account_service(cfg, db).accounts(domain)))
    for account in accounts:
        suffix = " (locked)" if account.locked else ""
        typer.echo(jid(account.username, account.domain) + suffix)


# ------------------------------------------------------------------- import


def _rejected_table(rejected: Sequence[Rejected], shown: int = 100) -> None:
    """One line per rejected line of the file, ``line N: USER: REASON``, in file order
    (plain lines, never wrapped, so that they can be searched and piped)."""
    console.print(f"rejected lines ({len(rejected)}):")
    for item in sorted(rejected, key=lambda r: r.line)[:shown]:
        who = f"{item.user}: " if item.user else ""
        console.print(f"  line {item.line}: {who}{item.reason}", soft_wrap=True)
    if len(rejected) > shown:
        console.print(f"  ... and {len(rejected) - shown} more rejected lines")


def _outcomes(title: str, rows: list[tuple[str, int]]) -> None:
    """The counts of an import (or its dry run), one row per outcome."""
    table = Table(title=title, title_justify="left")
    table.add_column("outcome")
    table.add_column("accounts", justify="right")
    for outcome, count in rows:
        table.add_row(outcome, str(count))
    console.print(table)


def _summary(result: ImportResult) -> None:
    rows = [("created", len(result.created))]
    if result.updated:
        rows.append(("updated", len(result.updated)))
    rows += [("skipped (exists)", len(result.skipped)), ("rejected", len(result.rejected))]
    _outcomes("import summary", rows)
    if result.rejected:
        _rejected_table(result.rejected)


def _show_plan(plan: ImportPlan, shown: int = 100) -> None:
    """The dry run's report: every account that would be created or updated (the
    first `shown` of each), and the counts."""
    for title, lines in (("would create", plan.create), ("would update", plan.update)):
        for x in lines[:shown]:
            console.print(f"{title}: {jid(x.username, x.domain)} (line {x.line})")
        if len(lines) > shown:
            console.print(f"{title}: ... and {len(lines) - shown} more")
    for name in plan.skipped[:shown]:
        console.print(f"would skip (exists): {name}")
    rows = [("would create", len(plan.create))]
    if plan.update:
        rows.append(("would update", len(plan.update)))
    rows += [("would skip (exists)", len(plan.skipped)), ("rejected", len(plan.held))]
    _outcomes("dry run: nothing was changed", rows)
    if plan.held:
        _rejected_table(plan.held)


@user_app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Accounts file (Wowza publish.password or CSV).")],
    config: ConfigOption = None,
    file_format: Annotated[
        ImportFormat,
        typer.Option(
            "--format",
            help="plain: exactly 'username password' per line; csv: username,password[,domain].",
        ),
    ] = ImportFormat.AUTO,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing/--update-existing",
            help="Leave existing accounts alone, or set their password from the file.",
        ),
    ] = True,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Check the file and show what would be done; change nothing."
        ),
    ] = False,
) -> None:
    """Create accounts in bulk, with the legacy secrets `user add` stores, all or nothing.

    Every line is checked before anything is created: a malformed line, or a name or
    password the account policy refuses, is listed with its line number and nothing
    is imported (exit 2); so is a name held by a pending registration or an
    invitation (exit 1).  --dry-run shows what would be created, updated or skipped.
    """
    cfg = load_or_exit(ctx, config)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {exc}", 2) from None
    fmt = detect_format(file, text) if file_format is ImportFormat.AUTO else file_format
    legacy = _legacy_options(cfg)
    lines, rejected = parse_import(text, fmt, cfg, account_policy(cfg))
    if rejected:
        _rejected_table(rejected)
        what = "checked" if dry_run else "imported"
        raise fail(f"{file}: {len(rejected)} lines rejected; nothing was {what}", 2)
    update_existing = not skip_existing

    if dry_run:
        plan = asyncio.run(
            with_db(cfg, lambda db: plan_import(db, lines, update_existing=update_existing))
        )
        _show_plan(plan)
        if plan.held:
            raise typer.Exit(1)
        return

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )
    workers = max(1, min(os.cpu_count() or 1, math.ceil(len(lines) / 8)))

    async def run(db: Database, pool: Executor) -> ImportPlan | ImportResult:
        plan = await plan_import(db, lines, update_existing=update_existing)
        if plan.held:
            return plan
        with progress:
            return await import_accounts(
                db,
                plan,
                pool,
                iterations=cfg.auth.scram_iterations,
                legacy=legacy,
                workers=workers,
                progress=progress,
            )

    # The pool first: its workers must be forked before the database threads exist.
    with start_derivation_pool(workers) as pool:
        try:
            outcome = asyncio.run(with_db(cfg, lambda db: run(db, pool)))
        finally:
            pool.shutdown(cancel_futures=True)
    if isinstance(outcome, ImportPlan):
        _rejected_table(outcome.held)
        raise fail(f"{file}: {len(outcome.held)} names are held; nothing was imported", 1)
    unannounced: str | None = None
    if outcome.created or outcome.updated:
        bump_credentials_stamp(cfg.data_dir)
        if cfg.cluster.enabled:  # and every node of the cluster
            from chatgate.cluster.notify import CommandLineCredentialsChanged

            notifier = CommandLineCredentialsChanged(cfg.cluster, LocalCredentialsChanged(None))
            try:
                asyncio.run(notifier.everything_changed())
            except OSError as exc:
                unannounced = not_announced(exc)
                if unannounced is None:
                    raise
    _summary(outcome)
    if unannounced is not None:
        raise fail(unannounced, 1)
    if outcome.rejected:  # taken by someone else between the check and the insert
        raise typer.Exit(1)
