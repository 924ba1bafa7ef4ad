"""`chatgate admin user|token` and `chatgate admin-password`: the administrators of
the API, console and metrics (the `basic` and `digest` methods), bearer tokens
for automation (`bearer`), and the `admin.password` file (`digestfile`, and
`remotehttp`'s fallback).

Passwords come from a hidden, confirmed prompt or one line of standard input
(``--password-stdin``), never from the command line.  A token is printed once,
when it is made: only its hash is kept.

`admin-password` writes Wowza's format, ``username hash groups``, hash =
H(username:realm:password) with `[admin] password_encoding` (md5 or sha256) and
`[admin] realm`; the file is rewritten atomically, mode 0600, its comments and
other lines kept.  A running server re-reads it within a second.

Exit codes as everywhere: 0 done; 1 the administrator or token named does not
exist, or already exists; 2 bad input or configuration.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from chatgate.cli.common import (
    ConfigOption,
    command_group,
    fail,
    load_or_exit,
    plain_console,
    with_db,
)
from chatgate.cli.invite import parse_duration
from chatgate.config import Config
from chatgate.datadir import write_private_file
from chatgate.http.auth.admins import (
    AdminAccounts,
    AdminNameTaken,
    InvalidAdmin,
    NoSuchAdmin,
    check_groups,
    check_name,
)
from chatgate.http.auth.base import GROUPS
from chatgate.http.auth.digest_core import ENCODINGS, ha1
from chatgate.http.auth.password_file import read_entries, render_line, replace_entry
from chatgate.http.auth.passwords import MAX_PASSWORD_BYTES
from chatgate.http.auth.tokens import BearerTokens
from chatgate.storage.database import Database
from chatgate.storage.repositories.admin import AdminTokenRow, AdminUserRow

admin_app = command_group("Administrators and bearer tokens of the API, console and metrics.")
admin_user_app = command_group("Administrators chatgate keeps (methods basic and digest).")
admin_token_app = command_group("Bearer tokens for automation (method bearer).")
admin_password_app = command_group(
    "The admin.password file (methods digestfile and remotehttp's fallback), Wowza's format."
)
admin_app.add_typer(
    admin_user_app, name="user", help="Add, change, delete and list administrators."
)
admin_app.add_typer(admin_token_app, name="token", help="Create, list and revoke bearer tokens.")
console = plain_console()

NameArgument = Annotated[str, typer.Argument(help="The administrator's name.")]
PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from one line of standard input."),
]
GroupOption = Annotated[
    list[str] | None,
    typer.Option(
        "--group",
        "-g",
        help=f"A group ({', '.join(GROUPS)}); repeat for more.  Default: admin.",
        show_default=False,
    ),
]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise fail("the password is empty", 2)
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise fail(f"a password is at most {MAX_PASSWORD_BYTES} bytes", 2)
    return password


def _groups(given: list[str] | None) -> tuple[str, ...]:
    try:
        return check_groups(given or ["admin"])
    except InvalidAdmin as exc:
        raise fail(str(exc), 2) from None


def _name(name: str) -> str:
    try:
        return check_name(name)
    except InvalidAdmin as exc:
        raise fail(str(exc), 2) from None


T = TypeVar("T")


def _run(cfg: Config, work: Callable[[Database], Awaitable[T]]) -> T:
    return asyncio.run(with_db(cfg, work))


# ------------------------------------------------------------------ admin user


@admin_user_app.command("add")
def user_add(
    ctx: typer.Context,
    name: NameArgument,
    group: GroupOption = None,
    config: ConfigOption = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create an administrator (Argon2id hash; with digest in [admin] auth, its digest
    secrets for [admin] realm too)."""
    cfg = load_or_exit(ctx, config)
    _name(name)
    groups = _groups(group)
    password = _password(password_stdin)

    async def add(db: Database) -> None:
        await AdminAccounts(db, cfg.admin).add(name, password, groups)

    try:
        _run(cfg, add)
    except AdminNameTaken as exc:
        raise fail(str(exc), 1) from None
    except InvalidAdmin as exc:
        raise fail(str(exc), 2) from None
    console.print(f"administrator {name} created ({', '.join(groups)})")


@admin_user_app.command("passwd")
def user_passwd(
    ctx: typer.Context,
    name: NameArgument,
    config: ConfigOption = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Set an administrator's password; its console sessions end."""
    cfg = load_or_exit(ctx, config)
    _name(name)
    password = _password(password_stdin)

    async def change(db: Database) -> None:
        await AdminAccounts(db, cfg.admin).set_password(name, password)

    try:
        _run(cfg, change)
    except NoSuchAdmin:
        raise fail(f"no such administrator {name}", 1) from None
    except InvalidAdmin as exc:
        raise fail(str(exc), 2) from None
    console.print(f"password of administrator {name} changed")


@admin_user_app.command("groups")
def user_groups(
    ctx: typer.Context, name: NameArgument, group: GroupOption = None, config: ConfigOption = None
) -> None:
    """Set an administrator's groups; its console sessions end."""
    cfg = load_or_exit(ctx, config)
    groups = _groups(group)

    async def change(db: Database) -> None:
        await AdminAccounts(db, cfg.admin).set_groups(name, groups)

    try:
        _run(cfg, change)
    except NoSuchAdmin:
        raise fail(f"no such administrator {name}", 1) from None
    console.print(f"administrator {name}: {', '.join(groups)}")


@admin_user_app.command("del")
def user_del(ctx: typer.Context, name: NameArgument, config: ConfigOption = None) -> None:
    """Delete an administrator; its console sessions end."""
    cfg = load_or_exit(ctx, config)

    async def remove(db: Database) -> None:
        await AdminAccounts(db, cfg.admin).remove(name)

    try:
        _run(cfg, remove)
    except NoSuchAdmin:
        raise fail(f"no such administrator {name}", 1) from None
    console.print(f"administrator {name} deleted")


def _when(at: int | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@admin_user_app.command("list")
def user_list(ctx: typer.Context, config: ConfigOption = None) -> None:
    """The administrators, their groups, and the realm of their digest secrets."""
    cfg = load_or_exit(ctx, config)

    async def rows(db: Database) -> list[AdminUserRow]:
        return await AdminAccounts(db, cfg.admin).all()

    found = _run(cfg, rows)
    table = Table(title=f"{len(found)} administrator(s)", title_justify="left")
    for column in ("name", "groups", "password", "digest realm", "created"):
        table.add_column(column)
    for row in found:
        kind = "argon2id" if row.password_hash.startswith("$argon2") else "bcrypt"
        table.add_row(
            row.name, ",".join(row.groups), kind, row.digest_realm or "-", _when(row.created_at)
        )
    console.print(table)


# ------------------------------------------------------------------ admin token


@admin_token_app.command("create")
def token_create(
    ctx: typer.Context,
    label: Annotated[str, typer.Option("--label", help="What the token is for (shown in lists).")],
    group: GroupOption = None,
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="Lifetime: 90s, 15m, 2h, 30d; unset: until revoked."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create a bearer token and print it, once (only its hash is kept)."""
    cfg = load_or_exit(ctx, config)
    groups = _groups(group)
    ttl: float | None = None
    if expires is not None:
        try:
            ttl = parse_duration(expires).total_seconds()
        except ValueError as exc:
            raise fail(str(exc), 2) from None

    async def create(db: Database) -> tuple[str, AdminTokenRow]:
        return await BearerTokens(db).create(label, groups, created_by="cli", ttl_seconds=ttl)

    try:
        token, row = _run(cfg, create)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    console.print(token)
    until = f"until {_when(row.expires_at)}" if row.expires_at else "until revoked"
    print(
        f"token {row.id} ({row.label}; {', '.join(row.groups)}; {until}): shown once, keep it",
        file=sys.stderr,
    )


@admin_token_app.command("list")
def token_list(ctx: typer.Context, config: ConfigOption = None) -> None:
    """The tokens: id, label, groups, expiry, last use (never the secrets)."""
    cfg = load_or_exit(ctx, config)

    async def rows(db: Database) -> list[AdminTokenRow]:
        return await BearerTokens(db).list()

    found = _run(cfg, rows)
    table = Table(title=f"{len(found)} token(s)", title_justify="left")
    for column in ("id", "label", "groups", "created by", "expires", "last used"):
        table.add_column(column)
    for row in found:
        table.add_row(
            row.id,
            row.label,
            ",".join(row.groups),
            row.created_by,
            _when(row.expires_at),
            _when(row.last_used_at),
        )
    console.print(table)


@admin_token_app.command("revoke")
def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (token list).")],
    config: ConfigOption = None,
) -> None:
    """Revoke a token: refused from its next use."""
    cfg = load_or_exit(ctx, config)

    async def revoke(db: Database) -> bool:
        return await BearerTokens(db).revoke(token_id)

    if not _run(cfg, revoke):
        raise fail(f"no such token {token_id}", 1)
    console.print(f"token {token_id} revoked")


# ------------------------------------------------------------------ admin-password


def _file(cfg: Config) -> Path:
    return cfg.path(cfg.admin.password_file)


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}", 2) from None


def _write_file(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private_file(path, text.encode())
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}", 2) from None


def _line(cfg: Config, name: str, password: str, groups: tuple[str, ...]) -> str:
    algorithm = ENCODINGS[cfg.admin.password_encoding]
    return render_line(name, ha1(algorithm, name, cfg.admin.realm, password), groups)


@admin_password_app.command("add")
def password_add(
    ctx: typer.Context,
    name: NameArgument,
    group: GroupOption = None,
    config: ConfigOption = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a line to the password file (H(name:realm:password), [admin] password_encoding)."""
    cfg = load_or_exit(ctx, config)
    _name(name)
    groups = _groups(group)
    path = _file(cfg)
    text = _read_file(path)
    if name in read_entries(text, str(path)):
        raise fail(f"{name} is already in {path}; use admin-password passwd", 1)
    password = _password(password_stdin)
    updated, _ = replace_entry(text, name, _line(cfg, name, password, groups))
    _write_file(path, updated)
    console.print(f"{name} added to {path} ({', '.join(groups)})")


@admin_password_app.command("passwd")
def password_passwd(
    ctx: typer.Context,
    name: NameArgument,
    config: ConfigOption = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Change a line's password (its groups are kept)."""
    cfg = load_or_exit(ctx, config)
    path = _file(cfg)
    text = _read_file(path)
    entry = read_entries(text, str(path)).get(name)
    if entry is None:
        raise fail(f"{name} is not in {path}", 1)
    password = _password(password_stdin)
    groups = tuple(g for g in GROUPS if g in entry.groups)
    updated, _ = replace_entry(text, name, _line(cfg, name, password, groups))
    _write_file(path, updated)
    console.print(f"password of {name} changed in {path}")


@admin_password_app.command("del")
def password_del(ctx: typer.Context, name: NameArgument, config: ConfigOption = None) -> None:
    """Remove a line from the password file."""
    cfg = load_or_exit(ctx, config)
    path = _file(cfg)
    updated, found = replace_entry(_read_file(path), name, None)
    if not found:
        raise fail(f"{name} is not in {path}", 1)
    _write_file(path, updated)
    console.print(f"{name} removed from {path}")
