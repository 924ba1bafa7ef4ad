"""`chatgate streams keys`: per-account stream keys (issue, revoke, list) and the
import of Wowza's ``publish.password`` (see `cli/streams.py` for the group)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from chatgate.cli.common import (
    ConfigOption,
    UserArgument,
    command_group,
    err_console,
    fail,
    jid,
    load_or_exit,
    parse_user,
    target,
)
from chatgate.cli.streams_support import (
    console,
    disabled_note,
    note,
    require_account,
    run_on_state,
    when,
)
from chatgate.storage.database import Database
from chatgate.streams.state import StreamState
from chatgate.streams.wowza_passwords import parse_publish_password

keys_app = command_group("Per-account stream keys (a publisher's secret in its media URL).")
#: `keys import-wowza` shows a progress bar from this many entries on
PROGRESS_FROM = 100
#: Imported keys shorter than this are reported as guessable (issued keys have 32).
WEAK_KEY_LENGTH = 12

# ------------------------------------------------------------------ keys


@keys_app.command("issue")
def keys_issue(ctx: typer.Context, user: UserArgument, config: ConfigOption = None) -> None:
    """Give an account a new random stream key and print it (shown only now).

    Any key the account had stops working at once.  USER is a name on the main
    domain or NAME@DOMAIN, and must be an existing account.
    """
    cfg = load_or_exit(ctx, config)
    username, domain = target(user, cfg)
    account = jid(username, domain)

    async def issue(db: Database, state: StreamState) -> tuple[str, str, bool]:
        await require_account(db, username, domain)
        had = await state.keys.key_of(account) is not None
        key = await state.keys.issue(account)
        owner = await state.keys.owner(key)
        return key, owner.key_id if owner is not None else "?", had

    key, key_id, replaced = run_on_state(cfg, issue)
    typer.echo(key)  # never wrapped: copied into an encoder
    what = "replaces the previous one" if replaced else "its first"
    err_console.print(
        f"stream key of {escape(account)} (id {key_id}, {what}): shown only now",
        highlight=False,
        soft_wrap=True,
    )
    disabled_note(cfg)


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, user: UserArgument, config: ConfigOption = None) -> None:
    """Remove an account's stream key: media URLs with it are refused from now on."""
    cfg = load_or_exit(ctx, config)
    username, domain = target(user, cfg)
    account = jid(username, domain)

    async def revoke(db: Database, state: StreamState) -> str | None:
        owner = await state.keys.revoke(account)
        return None if owner is None else owner.key_id

    key_id = run_on_state(cfg, revoke)
    if key_id is None:
        raise fail(f"{account} has no stream key", 1)
    console.print(f"stream key {key_id} of {account} revoked")


@keys_app.command("list")
def keys_list(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Every account with a stream key: the key's id and when it was made (never the key)."""
    cfg = load_or_exit(ctx, config)
    rows = run_on_state(cfg, lambda db, state: state.keys.listing())
    if not rows:
        console.print("no stream keys")
        return
    table = Table(title="stream keys", title_justify="left")
    table.add_column("account", overflow="fold")
    table.add_column("key id", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    for row in rows:
        table.add_row(Text(row.account), row.key_id, when(row.created_at))
    console.print(table)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )


@keys_app.command("import-wowza")
def keys_import_wowza(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A Wowza publish.password file.")],
    config: ConfigOption = None,
) -> None:
    """Import a Wowza publish.password file: each password becomes a stream key.

    Each 'username password' line makes the password that account's stream key,
    so publishers keep what their encoder sends.  '#' comments and blank lines
    are skipped; fields are separated by spaces or tabs.

    A line whose user has no account is skipped (`chatgate user add` makes
    accounts).  Invalid: a malformed line, a name that is not a valid account
    name, the same account or password twice, a password unfit as a stream key
    (6 to 128 printable ASCII characters) or already another account's key.
    Skipped and invalid lines are listed by number; passwords are never printed.
    The rest is imported, replacing keys the accounts had.  Exit 2 if lines were
    invalid, else 1 if lines were skipped, else 0.
    """
    cfg = load_or_exit(ctx, config)
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {exc}", 2) from None
    parsed = parse_publish_password(text)
    invalid = [(item.line, item.reason) for item in parsed.invalid]

    # Names to accounts; two spellings of one account, or one password for two
    # accounts (a key names its one owner), make the later line invalid.
    wanted: list[tuple[int, str, str, str, str]] = []  # line, username, domain, as written, pw
    first_of_account: dict[tuple[str, str], int] = {}
    first_of_password: dict[str, int] = {}
    for entry in parsed.entries:
        try:
            username, domain = parse_user(entry.username, cfg)
        except ValueError as exc:
            invalid.append((entry.line, str(exc)))
            continue
        first = first_of_account.setdefault((username, domain), entry.line)
        if first != entry.line:
            invalid.append((entry.line, f"{jid(username, domain)} is also on line {first}"))
            continue
        first = first_of_password.setdefault(entry.password, entry.line)
        if first != entry.line:
            invalid.append(
                (entry.line, f"the same password as line {first}: each account needs its own key")
            )
            continue
        wanted.append((entry.line, username, domain, entry.username, entry.password))

    weak: list[int] = []

    async def store(
        db: Database, state: StreamState
    ) -> tuple[list[str], int, list[tuple[int, str]], list[tuple[int, str]]]:
        existing = await db.accounts.existing([(u, d) for _, u, d, _, _ in wanted])
        had = {row.account for row in await state.keys.listing()}
        imported: list[str] = []
        skipped: list[tuple[int, str]] = []
        refused: list[tuple[int, str]] = []
        todo = []
        weak.clear()
        for line, username, domain, written, password in wanted:
            if (username, domain) in existing:
                todo.append((line, jid(username, domain), password))
            else:
                skipped.append((line, f"{written}: no such account {jid(username, domain)}"))
        progress = _progress() if len(todo) >= PROGRESS_FROM else None
        task = progress.add_task("importing keys", total=len(todo)) if progress else None
        try:
            if progress is not None:
                progress.start()
            for line, account, password in todo:
                try:
                    # ValueError: unfit as a key, another account's key, account gone
                    await state.keys.put(account, password)
                except ValueError as exc:
                    reason = str(exc) if password not in str(exc) else "unfit as a stream key"
                    refused.append((line, f"{account}: {reason}"))
                else:
                    imported.append(account)
                    if len(password) < WEAK_KEY_LENGTH:
                        weak.append(line)
                if progress is not None and task is not None:
                    progress.advance(task)
        finally:
            if progress is not None:
                progress.stop()
        return imported, len(had.intersection(imported)), skipped, refused

    imported, replaced, skipped, refused = run_on_state(cfg, store)
    invalid = sorted(invalid + refused)
    table = Table(title=f"import of {file}", title_justify="left")
    table.add_column("outcome")
    table.add_column("lines", justify="right")
    table.add_row("imported", str(len(imported)))
    if replaced:
        table.add_row("  of which replaced a key", str(replaced))
    table.add_row("skipped (no such account)", str(len(skipped)))
    table.add_row("invalid", str(len(invalid)))
    console.print(table)
    for title, rows in (("skipped", skipped), ("invalid", invalid)):
        if rows:
            console.print(f"{title} lines ({len(rows)}):")
            for line, reason in rows:
                console.print(f"  line {line}: {reason}", soft_wrap=True)
    if weak:
        note(
            f"{len(weak)} imported keys have fewer than {WEAK_KEY_LENGTH} characters "
            f"(lines {', '.join(map(str, weak[:10]))}{', ...' if len(weak) > 10 else ''}): "
            "guessable; give those users new ones with `chatgate streams keys issue USER`"
        )
    if invalid:
        raise typer.Exit(2)
    if skipped:
        raise typer.Exit(1)
