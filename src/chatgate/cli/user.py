"""`chatgate user`: add, change, delete, list and bulk-import accounts of the internal store.

Passwords come from a hidden, confirmed prompt or from one line of standard
input (``--password-stdin``), never from the command line (argv is visible to
every local user).  One over 1,024 bytes is refused before it is prepared, as
everywhere a password enters (`auth/passwords.py`).  A password set here stores exactly what in-band
registration and an in-band password change store: SCRAM keys, and the legacy
secrets `[modules.legacy_auth]` asks for (`derive_legacy_secrets`), written
together through `LegacyRepository`, so an account made here can log in with
legacy digest or zero-knowledge too, and a new password starts a fresh
zero-knowledge chain.  After every change the credentials stamp is bumped so a
running server drops its cached keys.

Accounts live on any served domain (`NAME@DOMAIN`) except an anonymous host.

Exit codes: 0 done; 1 the account already exists (or its name is held by a
pending registration or an invitation) / does not exist / some import lines
were rejected; 2 bad input or configuration.

`user import` spends its time in key derivation (three PBKDF2 runs per user),
so that runs in a process pool with one worker per CPU while the parent
inserts finished chunks in batched transactions.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from chatgate.auth.credentials import ScramKeys, derive_all
from chatgate.auth.internal import bump_credentials_stamp
from chatgate.auth.passwords import password_problem
from chatgate.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    UserArgument,
    command_group,
    err_console,
    fail,
    jid,
    load_or_exit,
    module_options,
    parse_user,
    plain_console,
    target,
    with_db,
)
from chatgate.config import Config
from chatgate.modules.legacy_auth import LegacyAuthOptions, derive_legacy_secrets
from chatgate.storage.database import Database
from chatgate.storage.errors import AccountExists, AccountNotFound
from chatgate.storage.models import utcnow
from chatgate.storage.repositories.legacy import LegacySecrets

user_app = command_group("Manage accounts in the internal store.")
console = plain_console()

PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from one line of standard input."),
]


# ------------------------------------------------------------------ helpers


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password)
    if problem:
        raise fail(problem, 2)
    return password


def _legacy_options(cfg: Config) -> LegacyAuthOptions:
    """Which legacy secrets a password set stores (`[modules.legacy_auth]`)."""
    return module_options(cfg, "legacy_auth", LegacyAuthOptions)


def _derive(
    password: str, username: str, domain: str, cfg: Config, legacy: LegacyAuthOptions
) -> tuple[dict[str, ScramKeys], LegacySecrets]:
    """What a password set stores: in-band registration's `derive_all` and
    `derive_legacy_secrets`, with the configured iterations and legacy options."""
    keys = derive_all(password, iterations=cfg.auth.scram_iterations)
    return keys, derive_legacy_secrets(password, username, domain, legacy)


async def name_taken(db: Database, username: str, domain: str) -> str | None:
    """Why username@domain cannot be created, or None: an account, a pending
    registration or a usable invitation reserving the name (as in-band registration)."""
    who = jid(username, domain)
    if await db.accounts.exists(username, domain):
        return f"user {who} already exists"
    if any(p.username == username for p in await db.legacy.pending(domain)):
        return f"{who} is awaiting approval: `chatgate registration approve` or `reject` it first"
    now = utcnow()
    if any(i.username == username and i.usable(now) for i in await db.legacy.invites(domain)):
        return f"{who} is reserved by an invitation: `chatgate invite revoke` it first"
    return None


# ----------------------------------------------------------------- commands


@user_app.command("add")
def add(
    user: UserArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create an account; the password is asked twice (or read with --password-stdin).

    Stores SCRAM keys and the legacy secrets that modules.legacy_auth asks for, as
    in-band registration does.  A name held by a pending registration or reserved
    by an invitation is refused like an existing account (exit 1).
    """
    cfg = load_or_exit(config)
    legacy = _legacy_options(cfg)
    username, domain = target(user, cfg)
    taken = asyncio.run(with_db(cfg, lambda db: name_taken(db, username, domain)))
    if taken:
        raise fail(taken, 1)
    keys, secrets = _derive(_read_password(password_stdin), username, domain, cfg, legacy)

    async def create(db: Database) -> str | None:
        try:
            await db.legacy.create_account(username, domain, keys, secrets, {})
        except AccountExists:  # taken meanwhile
            return await name_taken(db, username, domain) or f"{jid(username, domain)} is taken"
        return None

    taken = asyncio.run(with_db(cfg, create))
    if taken:
        raise fail(taken, 1)
    bump_credentials_stamp(cfg.data_dir)
    console.print(f"user {jid(username, domain)} created")


@user_app.command("passwd")
def passwd(
    user: UserArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a new password; every stored key and legacy secret of the old one is replaced.

    As an in-band password change: new SCRAM keys, new legacy secrets (the
    zero-knowledge chain starts over with a new token), in one transaction.
    Sessions already open stay open; the next login needs the new password.
    """
    cfg = load_or_exit(config)
    legacy = _legacy_options(cfg)
    username, domain = target(user, cfg)
    if not asyncio.run(with_db(cfg, lambda db: db.accounts.exists(username, domain))):
        raise fail(f"no such user {jid(username, domain)}", 1)
    keys, secrets = _derive(_read_password(password_stdin), username, domain, cfg, legacy)
    try:
        asyncio.run(
            with_db(cfg, lambda db: db.legacy.change_password((username, domain), keys, secrets))
        )
    except AccountNotFound:
        raise fail(f"no such user {jid(username, domain)}", 1) from None
    bump_credentials_stamp(cfg.data_dir)
    console.print(f"password of {jid(username, domain)} changed")


@user_app.command("del")
def delete(user: UserArgument, config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Delete an account and everything it owns, as in-band <remove/> does.

    Keys, legacy secrets, registration fields, roster, subscription requests,
    offline messages and vCard go in one statement (the database cascades); a
    registration of the name still awaiting approval is dropped too, so the name
    is free at once.  Sessions open on a running server stay open until they end,
    and contacts are not sent the unsubscriptions an in-band removal sends.
    """
    cfg = load_or_exit(config)
    username, domain = target(user, cfg)

    async def remove(db: Database) -> tuple[bool, bool]:
        return await db.accounts.delete(username, domain), await db.legacy.reject(username, domain)

    deleted, dropped = asyncio.run(with_db(cfg, remove))
    if not deleted and not dropped:
        raise fail(f"no such user {jid(username, domain)}", 1)
    bump_credentials_stamp(cfg.data_dir)
    if deleted:
        console.print(f"user {jid(username, domain)} deleted")
    if dropped:
        console.print(f"pending registration of {jid(username, domain)} deleted")


@user_app.command("list")
def list_(
    config: ConfigOption = DEFAULT_CONFIG,
    domain: Annotated[str | None, typer.Option(help="Only accounts of this domain.")] = None,
) -> None:
    """Print every account's bare JID, one per line, sorted by domain then name."""
    cfg = load_or_exit(config)
    accounts = asyncio.run(with_db(cfg, lambda db: db.accounts.list(domain)))
    for account in accounts:
        typer.echo(jid(account.username, account.domain))


# ------------------------------------------------------------------- import


class ImportFormat(StrEnum):
    AUTO = "auto"
    PLAIN = "plain"
    CSV = "csv"


@dataclass(frozen=True, slots=True)
class ImportLine:
    line: int
    username: str
    domain: str
    password: str


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    user: str  # as written in the file
    reason: str


@dataclass
class ImportResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def detect_format(path: Path, text: str) -> ImportFormat:
    """CSV when the file ends in .csv or its first record's first field holds a comma."""
    if path.suffix.lower() == ".csv":
        return ImportFormat.CSV
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            return ImportFormat.CSV if "," in line.split()[0] else ImportFormat.PLAIN
    return ImportFormat.PLAIN


def _plain_records(text: str) -> list[tuple[int, list[str]]]:
    """Wowza publish.password style: ``username password`` per line, '#' starts a comment line.

    The password is the rest of the line after the first run of whitespace
    (surrounding whitespace removed), so passwords may contain spaces and '#'.
    """
    records = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        records.append((number, line.split(None, 1)))
    return records


_HEADER_NAMES = {"username", "user", "name", "jid", "login"}


def _csv_records(text: str) -> list[tuple[int, list[str]]]:
    """``username,password[,domain]``; an optional header row; '#' lines and blank lines skipped."""
    records = []
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        number = reader.line_num
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if (
            not records
            and row[0].strip().lower() in _HEADER_NAMES
            and len(row) > 1
            and (row[1].strip().lower() == "password")
        ):
            continue
        records.append((number, row))
    return records


def parse_import(
    text: str, fmt: ImportFormat, cfg: Config
) -> tuple[list[ImportLine], list[Rejected]]:
    """Validate every record; each bad one is rejected with its line number and reason
    (a domain this server does not serve, or an anonymous host, too)."""
    records = _csv_records(text) if fmt is ImportFormat.CSV else _plain_records(text)
    accepted: list[ImportLine] = []
    rejected: list[Rejected] = []
    seen: dict[tuple[str, str], int] = {}
    for number, fields in records:
        user = fields[0].strip()
        if len(fields) < 2:
            rejected.append(Rejected(number, user, "missing password"))
            continue
        password = fields[1] if fmt is ImportFormat.CSV else fields[1].strip()
        if fmt is ImportFormat.CSV and len(fields) > 2 and fields[2].strip():
            if "@" in user:
                rejected.append(Rejected(number, user, "domain given twice"))
                continue
            user = f"{user}@{fields[2].strip()}"
        if fmt is ImportFormat.CSV and len(fields) > 3:
            rejected.append(Rejected(number, user, f"{len(fields)} fields, expected 2 or 3"))
            continue
        try:
            username, domain = parse_user(user, cfg)
        except ValueError as exc:
            rejected.append(Rejected(number, user, str(exc)))
            continue
        problem = password_problem(password)
        if problem:
            rejected.append(Rejected(number, user, problem))
            continue
        first = seen.setdefault((username, domain), number)
        if first != number:
            rejected.append(Rejected(number, user, f"duplicate of line {first}"))
            continue
        accepted.append(ImportLine(number, username, domain, password))
    return accepted, rejected


def _derive_chunk(
    lines: Sequence[ImportLine], iterations: int, legacy: LegacyAuthOptions
) -> list[tuple[dict[str, ScramKeys], LegacySecrets]]:
    """Worker-process entry point: SCRAM keys and legacy secrets for every line of a chunk."""
    return [
        (
            derive_all(x.password, iterations=iterations),
            derive_legacy_secrets(x.password, x.username, x.domain, legacy),
        )
        for x in lines
    ]


def _chunk_size(count: int, workers: int) -> int:
    # Enough chunks to keep every worker busy and the progress bar moving, not so
    # many that pickling and transactions dominate.
    return max(8, min(256, math.ceil(count / (workers * 8))))


def start_derivation_pool(workers: int) -> Executor:
    """A process pool for `_derive_chunk`, its workers started before this returns.

    Call it before opening the database: on Linux the workers are forked while
    this process has no other thread yet (forking a process that has threads,
    such as aiosqlite's, is unsafe), and forking, unlike spawning, never
    re-runs the ``__main__`` module.  Elsewhere the workers are spawned.
    """
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
    # With fork, the first submit starts every worker at once (CPython >= 3.9).
    pool.submit(int).result()
    return pool


async def import_accounts(
    db: Database,
    lines: Sequence[ImportLine],
    pool: Executor,
    *,
    iterations: int,
    legacy: LegacyAuthOptions,
    update_existing: bool,
    workers: int,
    progress: Progress | None = None,
) -> ImportResult:
    """Derive keys and legacy secrets on `pool` (`workers` wide) and store them in
    batched transactions.

    Existing accounts are skipped before any derivation, or their keys and
    secrets are replaced with `update_existing`.  Names held by a pending
    registration or an invitation are rejected, as `user add` refuses them.
    Chunks are stored as they finish, so the database work overlaps the derivation.
    """
    result = ImportResult()
    existing = await db.accounts.existing([(line.username, line.domain) for line in lines])
    todo = list(lines)
    if not update_existing:
        result.skipped = [
            jid(x.username, x.domain) for x in todo if (x.username, x.domain) in existing
        ]
        todo = [x for x in todo if (x.username, x.domain) not in existing]
    if not todo:
        return result
    task = progress.add_task("deriving keys", total=len(todo)) if progress else None
    size = _chunk_size(len(todo), workers)
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    loop = asyncio.get_running_loop()

    async def derive(chunk: list[ImportLine]) -> tuple[list[ImportLine], list]:
        return chunk, await loop.run_in_executor(pool, _derive_chunk, chunk, iterations, legacy)

    by_jid = {jid(x.username, x.domain): x for x in todo}
    pending = [asyncio.ensure_future(derive(chunk)) for chunk in chunks]
    try:
        for finished in asyncio.as_completed(pending):
            chunk, derived = await finished
            rows = [
                (x.username, x.domain, keys, secrets)
                for x, (keys, secrets) in zip(chunk, derived, strict=True)
            ]
            fresh = [r for r in rows if (r[0], r[1]) not in existing]
            known = [r for r in rows if (r[0], r[1]) in existing]
            created, skipped, held = await db.legacy.create_accounts(fresh)
            if known:
                updated, missing = await db.legacy.change_passwords(known)
                result.updated += updated
                if missing:  # deleted meanwhile: create them after all
                    gone = set(missing)
                    again, skipped_again, held_again = await db.legacy.create_accounts(
                        [r for r in known if jid(r[0], r[1]) in gone]
                    )
                    created += again
                    skipped += skipped_again
                    held += held_again
            result.created += created
            result.skipped += skipped
            result.rejected += [Rejected(by_jid[name].line, name, _HELD) for name in held]
            if progress is not None and task is not None:
                progress.advance(task, len(chunk))
    finally:
        for future in pending:
            future.cancel()
    return result


_HELD = "held by a pending registration or reserved by an invitation"


def _summary(result: ImportResult, shown: int = 100) -> None:
    table = Table(title="import summary", title_justify="left")
    table.add_column("outcome")
    table.add_column("accounts", justify="right")
    table.add_row("created", str(len(result.created)))
    if result.updated:
        table.add_row("updated", str(len(result.updated)))
    table.add_row("skipped (exists)", str(len(result.skipped)))
    table.add_row("rejected", str(len(result.rejected)))
    console.print(table)
    if not result.rejected:
        return
    rejected = Table(title="rejected lines", title_justify="left")
    for column in ("line", "user", "reason"):
        rejected.add_column(column)
    for item in sorted(result.rejected, key=lambda r: r.line)[:shown]:
        rejected.add_row(str(item.line), Text(item.user), Text(item.reason))
    console.print(rejected)
    if len(result.rejected) > shown:
        console.print(f"... and {len(result.rejected) - shown} more rejected lines")


@user_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="Accounts file (Wowza publish.password or CSV).")],
    config: ConfigOption = DEFAULT_CONFIG,
    file_format: Annotated[
        ImportFormat,
        typer.Option(
            "--format", help="plain: 'username password' lines; csv: username,password[,domain]."
        ),
    ] = ImportFormat.AUTO,
    skip_existing: Annotated[
        bool,
        typer.Option(
            "--skip-existing/--update-existing",
            help="Leave existing accounts alone, or set their password from the file.",
        ),
    ] = True,
) -> None:
    """Create accounts in bulk, with the legacy secrets `user add` stores; exits 1 when
    some lines were rejected (they are listed)."""
    cfg = load_or_exit(config)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {exc}", 2) from None
    fmt = detect_format(file, text) if file_format is ImportFormat.AUTO else file_format
    legacy = _legacy_options(cfg)
    lines, rejected = parse_import(text, fmt, cfg)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )
    workers = max(1, min(os.cpu_count() or 1, math.ceil(len(lines) / 8)))

    async def run(db: Database, pool: Executor) -> ImportResult:
        with progress:
            return await import_accounts(
                db,
                lines,
                pool,
                iterations=cfg.auth.scram_iterations,
                legacy=legacy,
                update_existing=not skip_existing,
                workers=workers,
                progress=progress,
            )

    # The pool first: its workers must be forked before the database threads exist.
    with start_derivation_pool(workers) as pool:
        try:
            result = asyncio.run(with_db(cfg, lambda db: run(db, pool)))
        finally:
            pool.shutdown(cancel_futures=True)
    result.rejected = rejected + result.rejected
    if result.created or result.updated:
        bump_credentials_stamp(cfg.data_dir)
    _summary(result)
    if result.rejected:
        raise typer.Exit(1)
