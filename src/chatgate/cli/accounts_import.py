"""`chatgate user import`'s machinery: read an accounts file, check every line, plan,
then derive keys in a process pool and store them in batches.

The file is read strictly, never guessed at.  A plain line is exactly
``username password`` (Wowza's ``publish.password``): two fields separated by
whitespace.  The line ``bad user name x`` used to become user ``bad`` with the
password ``user name x``; it is now refused, with its line number, and a password
with spaces (or a leading '#') goes in a CSV file, ``username,password[,domain]``,
read with `csv.reader(strict=True)` so that a stray quote is an error rather than
part of a password.

All or nothing: every line is checked first (format, names and passwords
against the account policy, duplicates), then every name against the database
(existing accounts are skipped or updated; names held by a pending registration
or an invitation are refused), and only a file that passes both is imported.  A
name taken by someone else between the check and the insert (a registration
arriving meanwhile) is the one case reported after others were created.

Key derivation (three PBKDF2 runs per user) is the cost, so it runs in a process
pool with one worker per CPU while the parent stores finished chunks in batched
transactions.  Nothing here prints: `cli/user.py` owns the output.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from rich.progress import Progress

from chatgate.auth.credentials import ScramKeys, derive_all
from chatgate.auth.policy import AccountPolicy, PolicyViolation
from chatgate.cli.common import jid, parse_user
from chatgate.config import Config
from chatgate.modules.legacy_auth import LegacyAuthOptions, derive_legacy_secrets
from chatgate.storage.database import Database
from chatgate.storage.models import utcnow
from chatgate.storage.repositories.legacy import LegacySecrets

__all__ = [
    "HELD",
    "ImportFormat",
    "ImportLine",
    "ImportPlan",
    "ImportResult",
    "Rejected",
    "detect_format",
    "import_accounts",
    "parse_import",
    "plan_import",
    "start_derivation_pool",
]

HELD = "held by a pending registration or reserved by an invitation"


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
class ImportPlan:
    """What an import would do, decided before anything is derived or stored."""

    create: list[ImportLine] = field(default_factory=list)
    update: list[ImportLine] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    held: list[Rejected] = field(default_factory=list)


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


# ---------------------------------------------------------------- reading


def _plain_records(text: str) -> tuple[list[tuple[int, str, str]], list[Rejected]]:
    """``username password`` per line, exactly two whitespace-separated fields; blank
    lines and lines starting with '#' are skipped."""
    records: list[tuple[int, str, str]] = []
    rejected: list[Rejected] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) == 1:
            rejected.append(Rejected(number, fields[0], "missing password"))
        elif len(fields) > 2:
            rejected.append(
                Rejected(
                    number,
                    fields[0],
                    f"{len(fields)} fields, expected exactly 'username password'"
                    " (a password with spaces needs the CSV format)",
                )
            )
        else:
            records.append((number, fields[0], fields[1]))
    return records, rejected


_HEADER_NAMES = {"username", "user", "name", "jid", "login"}


def _csv_records(text: str) -> tuple[list[tuple[int, str, str]], list[Rejected]]:
    """``username,password[,domain]``; an optional header row first; blank rows and
    rows whose first field starts with '#' are skipped.  A row that is not valid CSV
    (a stray quote) ends the reading: what follows it cannot be trusted to be split
    where the author meant."""
    records: list[tuple[int, str, str]] = []
    rejected: list[Rejected] = []
    reader = csv.reader(io.StringIO(text), strict=True)
    first = True
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            reason = f"not valid CSV ({exc}); the rest of the file was not read"
            rejected.append(Rejected(reader.line_num, "", reason))
            break
        number = reader.line_num
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        header = (
            first
            and row[0].strip().lower() in _HEADER_NAMES
            and len(row) > 1
            and row[1].strip().lower() == "password"
        )
        first = False
        if header:
            continue
        user = row[0].strip()
        if len(row) > 3:
            rejected.append(Rejected(number, user, f"{len(row)} fields, expected 2 or 3"))
        elif not user:
            rejected.append(Rejected(number, user, "missing username"))
        elif len(row) < 2 or not row[1]:
            rejected.append(Rejected(number, user, "missing password"))
        elif len(row) == 3 and row[2].strip() and "@" in user:
            rejected.append(Rejected(number, user, "domain given twice"))
        else:
            domain = row[2].strip() if len(row) == 3 else ""
            records.append((number, f"{user}@{domain}" if domain else user, row[1]))
    return records, rejected


def parse_import(
    text: str, fmt: ImportFormat, cfg: Config, policy: AccountPolicy
) -> tuple[list[ImportLine], list[Rejected]]:
    """Check every line: its format, its name (a served domain that keeps accounts,
    the policy's lengths and reserved names) and its password (the policy's rules),
    and that no account appears twice.  Each bad line is rejected with its number
    and the reason; the accepted ones are returned in file order."""
    if fmt is ImportFormat.CSV:
        records, rejected = _csv_records(text)
    else:
        records, rejected = _plain_records(text)
    accepted: list[ImportLine] = []
    seen: dict[tuple[str, str], int] = {}
    for number, user, password in records:
        try:
            username, domain = parse_user(user, cfg)
            policy.username(username)
            policy.password(password)
        except (ValueError, PolicyViolation) as exc:
            rejected.append(Rejected(number, user, str(exc)))
            continue
        first = seen.setdefault((username, domain), number)
        if first != number:
            rejected.append(Rejected(number, user, f"duplicate of line {first}"))
            continue
        accepted.append(ImportLine(number, username, domain, password))
    rejected.sort(key=lambda r: r.line)
    return accepted, rejected


async def plan_import(
    db: Database, lines: Sequence[ImportLine], *, update_existing: bool
) -> ImportPlan:
    """Sort the lines into accounts to create, to update (`update_existing`) or to
    skip (they exist), and names held by a pending registration or a usable
    invitation, which `user add` refuses too.  Reads the database, writes nothing."""
    plan = ImportPlan()
    existing = await db.accounts.existing([(x.username, x.domain) for x in lines])
    now = utcnow()
    held: dict[tuple[str, str], str] = {}
    for domain in sorted({x.domain for x in lines}):
        for i in await db.invitations.invites(domain):
            if i.username is not None and i.usable(now):
                held[(i.username, domain)] = "reserved by an invitation"
        for p in await db.pending_registrations.pending(domain):
            held[(p.username, domain)] = "held by a registration awaiting approval"
    for x in lines:
        pair = (x.username, x.domain)
        if pair in existing:
            if update_existing:
                plan.update.append(x)
            else:
                plan.skipped.append(jid(*pair))
        elif pair in held:
            plan.held.append(Rejected(x.line, jid(*pair), held[pair]))
        else:
            plan.create.append(x)
    return plan


# ---------------------------------------------------------------- deriving and storing


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
    plan: ImportPlan,
    pool: Executor,
    *,
    iterations: int,
    legacy: LegacyAuthOptions,
    workers: int,
    progress: Progress | None = None,
) -> ImportResult:
    """Carry out `plan` (which must hold no `held` names): derive keys and legacy
    secrets on `pool` (`workers` wide) and store them in batched transactions,
    chunks stored as they finish so the database work overlaps the derivation."""
    if plan.held:
        raise ValueError("a plan with held names is not imported")
    result = ImportResult(skipped=list(plan.skipped))
    existing = {(x.username, x.domain) for x in plan.update}
    todo = plan.create + plan.update
    if not todo:
        return result
    task = progress.add_task("deriving keys", total=len(todo)) if progress else None
    size = _chunk_size(len(todo), workers)
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    loop = asyncio.get_running_loop()

    async def derive(chunk: list[ImportLine]) -> tuple[list[ImportLine], list[Any]]:
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
            created, skipped, held = await db.registration.create_accounts(fresh)
            if known:
                updated, missing = await db.legacy.change_passwords(known)
                result.updated += updated
                if missing:  # deleted meanwhile: create them after all
                    gone = set(missing)
                    again, skipped_again, held_again = await db.registration.create_accounts(
                        [r for r in known if jid(r[0], r[1]) in gone]
                    )
                    created += again
                    skipped += skipped_again
                    held += held_again
            result.created += created
            result.skipped += skipped
            result.rejected += [Rejected(by_jid[name].line, name, HELD) for name in held]
            if progress is not None and task is not None:
                progress.advance(task, len(chunk))
    finally:
        for future in pending:
            future.cancel()
    return result
