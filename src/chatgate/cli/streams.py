"""`chatgate streams`: the stream authority's rules, stream keys, tokens and live
streams, from the command line.

Media servers ask chatgate, over the hooks under ``/hooks/``, who may publish or
play a stream (`chatgate.streams`).  These commands change what the answers rest
on, in the database the server uses:

- ``rules``: who may publish and play what.  ``[streams] rules`` in
  ``chatgate.toml`` are fixed until the file is edited and the server
  restarted; rules added here are stored and apply at once.  ``rules export``
  writes both kinds in the file format ``rules import`` reads back
  (`streams/rules_file.py`).
- ``keys``: per-account stream keys, the secret a publisher puts in its media URL
  instead of its XMPP password.  A key is printed once, when issued; only its
  id is listed afterwards.  ``keys import-wowza`` turns a Wowza
  ``publish.password`` file into keys (`streams/wowza_passwords.py`), for
  existing accounts only (``chatgate user add`` makes accounts).
- ``tokens issue``: a signed, expiring token for one stream and action
  (`streams/tokens.py`), signed with the installation's newest token key.
- ``live``: the live streams as the server last saved them.

Every change of keys or rules raises the authority's change signal (the stores
raise it themselves: `DatabaseStreamKeys`, `DatabaseRuleStore`), so a running
server drops what it cached and its next hook call sees the change.

Exit codes, as in every group (`cli/common.py`): 0 done; 1 the account, key or
rule does not exist, or the rule is already there; 2 bad input or
configuration.  ``keys import-wowza`` imports what it can: it exits 2 when the
file had invalid lines, else 1 when lines named no account, else 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import quote, urlsplit

import typer
from rich import box
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
    plain_console,
    target,
    with_db,
)
from chatgate.cli.invite import parse_duration
from chatgate.config import Config
from chatgate.storage.database import Database
from chatgate.streams import tokens
from chatgate.streams.live import Publication, Session, Viewing
from chatgate.streams.policy import InvalidStreamName, Rule, Subject, check_stream_name
from chatgate.streams.rule_store import MAX_RULE_LENGTH
from chatgate.streams.rulebook import RuleBook
from chatgate.streams.rules_file import format_rules_file, parse_rules_file
from chatgate.streams.state import StreamState, open_stream_state
from chatgate.streams.wowza_passwords import parse_publish_password

__all__ = ["streams_app"]

T = TypeVar("T")

streams_app = command_group(
    "The stream authority: rules, stream keys, tokens and live streams of media servers."
)
rules_app = command_group("Who may publish and play which streams.")
keys_app = command_group("Per-account stream keys (a publisher's secret in its media URL).")
tokens_app = command_group("Signed, expiring tokens for one stream and action.")
streams_app.add_typer(rules_app, name="rules", help="Who may publish and play which streams.")
streams_app.add_typer(
    keys_app, name="keys", help="Per-account stream keys (a publisher's secret in its media URL)."
)
streams_app.add_typer(
    tokens_app, name="tokens", help="Signed, expiring tokens for one stream and action."
)
console = plain_console()

#: longest token lifetime `tokens issue` gives (a token cannot be revoked one by one)
MAX_TTL = timedelta(days=30)
#: `keys import-wowza` shows a progress bar from this many entries on
PROGRESS_FROM = 100
#: Imported keys shorter than this are reported as guessable (issued keys have 32).
WEAK_KEY_LENGTH = 12


# ------------------------------------------------------------------ helpers


def _run(cfg: Config, work: Callable[[Database, StreamState], Awaitable[T]]) -> T:
    """Open the database and the authority's state on it, run `work`, close."""

    async def run(db: Database) -> T:
        state = await open_stream_state(db, cfg.data_dir)
        return await work(db, state)

    return asyncio.run(with_db(cfg, run))


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _note(text: str) -> None:
    err_console.print(f"[yellow]note:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


def _disabled_note(cfg: Config) -> None:
    if not cfg.streams.enabled:
        _note("[streams] enabled is false in the configuration: media servers' hooks are off")


def _configured(cfg: Config) -> list[Rule]:
    # Validated when the configuration loaded (`StreamsOptions`).
    return [Rule.parse(text) for text in cfg.streams.rules]


def _rule_argument(words: list[str]) -> Rule:
    """The rule given as one argument or as words (``publish 'live/*' token``)."""
    text = " ".join(words)
    try:
        return Rule.parse(text)
    except ValueError as exc:  # InvalidPattern is one: the message names the fault
        raise fail(f"invalid rule {text!r}: {exc}", 2) from None


def _parsed(texts: list[str]) -> list[tuple[str, Rule | None, str]]:
    """Stored rule texts with their parse (None and the reason for one that fails)."""
    out: list[tuple[str, Rule | None, str]] = []
    for text in texts:
        try:
            out.append((text, Rule.parse(text), ""))
        except ValueError as exc:
            out.append((text, None, str(exc)))
    return out


# ------------------------------------------------------------------ rules

RuleWords = Annotated[
    list[str],
    typer.Argument(
        help="ACTIONS PATTERN GRANTEE, as one quoted argument or as words:"
        " 'publish,play live/* group:staff'.",
        show_default=False,
    ),
]


@rules_app.command("list")
def rules_list(ctx: typer.Context, config: ConfigOption = None) -> None:
    """List every rule: chatgate.toml's first, then the stored ones.

    Rules of chatgate.toml (the streams section's rules) are marked so: they change
    only when that file is edited and the server restarted.
    """
    cfg = load_or_exit(ctx, config)
    configured = _configured(cfg)
    stored = _parsed(_run(cfg, lambda db, state: state.rules.rules()))
    if not configured and not stored:
        console.print("no rules: every publish and play is denied")
        return
    table = Table(title="stream rules", title_justify="left")
    table.add_column("rule", overflow="fold")
    table.add_column("source", overflow="fold")
    for rule in configured:
        table.add_row(Text(str(rule)), "chatgate.toml")
    for text, parsed, reason in stored:
        source = "stored" if parsed is not None else f"stored, INVALID ({reason}): ignored"
        table.add_row(Text(text), Text(source))
    console.print(table)


@rules_app.command("add")
def rules_add(ctx: typer.Context, rule: RuleWords, config: ConfigOption = None) -> None:
    """Store a rule; a running server applies it at once.

    The rule is checked first (its actions, pattern and grantee) and stored in its
    canonical spelling.  One that is already configured or stored exits 1.
    """
    cfg = load_or_exit(ctx, config)
    parsed = _rule_argument(rule)
    text = str(parsed)
    if len(text) > MAX_RULE_LENGTH:
        raise fail(f"the rule has {len(text)} characters; at most {MAX_RULE_LENGTH} are stored", 2)
    if parsed in _configured(cfg):
        raise fail(f"{text!r} is already configured in chatgate.toml [streams] rules", 1)

    async def add(db: Database, state: StreamState) -> str | None:
        for stored_text, stored, _ in _parsed(await state.rules.rules()):
            if stored == parsed:
                return f"{stored_text!r} is already stored"
        if not await state.rules.add(text):
            return f"{text!r} is already stored"
        return None

    problem = _run(cfg, add)
    if problem:
        raise fail(problem, 1)
    console.print(f"rule added: {text}")
    _disabled_note(cfg)


@rules_app.command("remove")
def rules_remove(ctx: typer.Context, rule: RuleWords, config: ConfigOption = None) -> None:
    """Remove a stored rule (a running server stops applying it at once).

    Any spelling of the rule finds it (``play,publish`` is ``publish,play``); a
    stored rule that no longer parses is removed by its exact text.  Rules of
    chatgate.toml are removed by editing that file.
    """
    cfg = load_or_exit(ctx, config)
    text = " ".join(rule)

    async def remove(db: Database, state: StreamState) -> list[str]:
        stored = _parsed(await state.rules.rules())
        if any(stored_text == text for stored_text, _, _ in stored):
            matches = [text]
        else:
            parsed = _rule_argument(rule)
            matches = [stored_text for stored_text, r, _ in stored if r == parsed]
        return [m for m in matches if await state.rules.remove(m)]

    removed = _run(cfg, remove)
    configured = False
    with contextlib.suppress(ValueError):
        configured = Rule.parse(text) in _configured(cfg)
    if not removed:
        if configured:
            raise fail(
                f"{text!r} is configured in chatgate.toml [streams] rules, not stored:"
                " edit chatgate.toml (and restart the server) to remove it",
                1,
            )
        raise fail(f"no stored rule {text!r} (`chatgate streams rules list` shows them)", 1)
    for item in removed:
        console.print(f"rule removed: {item}")
    if configured:
        _note("the same rule is also in chatgate.toml [streams] rules: it still applies")


@rules_app.command("export")
def rules_export(
    ctx: typer.Context,
    file: Annotated[
        str, typer.Argument(help="File to write, or - for standard output.", show_default=True)
    ] = "-",
    config: ConfigOption = None,
) -> None:
    """Write every rule, configured and stored, in the format `rules import` reads.

    One rule per line, under a header comment; comments say where each group of
    rules came from.  Without FILE, or with -, to standard output.
    """
    cfg = load_or_exit(ctx, config)
    configured = _configured(cfg)
    stored = _parsed(_run(cfg, lambda db, state: state.rules.rules()))
    valid = [r for _, r, _ in stored if r is not None]
    for stored_text, r, reason in stored:
        if r is None:
            _note(f"stored rule {stored_text!r} left out: {reason}")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = format_rules_file(
        [
            ("from chatgate.toml [streams] rules", configured),
            ("stored (chatgate streams rules add)", valid),
        ],
        note=f"exported {stamp}",
    )
    count = len(configured) + len(valid)
    if file == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(file).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {file}: {exc}", 2) from None
    console.print(f"{count} rules written to {file}")


def _read_text(file: str) -> str:
    """A UTF-8 file's text (a byte-order mark is allowed), or standard input for -."""
    try:
        if file == "-":
            return sys.stdin.buffer.read().decode("utf-8-sig")
        return Path(file).read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {exc}", 2) from None


@rules_app.command("import")
def rules_import(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="Rules file (as `rules export` writes), or -.")],
    config: ConfigOption = None,
) -> None:
    """Store the rules of a file: one per line, # comments and blank lines ignored.

    Every line is checked before any rule is stored: one invalid line (reported
    with its number and what is wrong) stores nothing and exits 2.  Rules already
    configured or stored are counted and left as they are.
    """
    cfg = load_or_exit(ctx, config)
    parsed = parse_rules_file(_read_text(file))
    if parsed.invalid:
        console.print(f"invalid lines ({len(parsed.invalid)}):")
        for line, reason in parsed.invalid:
            console.print(f"  line {line}: {reason}", soft_wrap=True)
        raise fail(f"{file}: {len(parsed.invalid)} invalid lines; no rule was imported", 2)
    for item in parsed.rules:
        if len(str(item.rule)) > MAX_RULE_LENGTH:
            raise fail(
                f"{file}: line {item.line}: the rule has more than {MAX_RULE_LENGTH}"
                " characters; no rule was imported",
                2,
            )
    configured = set(_configured(cfg))

    async def store(db: Database, state: StreamState) -> tuple[list[str], int, int]:
        stored = {r for _, r, _ in _parsed(await state.rules.rules()) if r is not None}
        added: list[str] = []
        present_configured = present_stored = 0
        for item in parsed.rules:
            if item.rule in configured:
                present_configured += 1
            elif item.rule in stored or not await state.rules.add(str(item.rule)):
                present_stored += 1
            else:
                added.append(str(item.rule))
        return added, present_configured, present_stored

    added, in_config, in_store = _run(cfg, store)
    for text in added:
        console.print(f"added: {text}")
    table = Table(title=f"import of {file}", title_justify="left")
    table.add_column("outcome")
    table.add_column("rules", justify="right")
    table.add_row("added", str(len(added)))
    table.add_row("already present (chatgate.toml)", str(in_config))
    table.add_row("already present (stored)", str(in_store))
    if parsed.duplicates:
        table.add_row("repeated in the file", str(len(parsed.duplicates)))
    console.print(table)


# ------------------------------------------------------------------ keys


async def _require_account(db: Database, username: str, domain: str) -> None:
    if not await db.accounts.exists(username, domain):
        raise fail(f"no such user {jid(username, domain)} (`chatgate user add` creates it)", 1)


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
        await _require_account(db, username, domain)
        had = await state.keys.key_of(account) is not None
        key = await state.keys.issue(account)
        owner = await state.keys.owner(key)
        return key, owner.key_id if owner is not None else "?", had

    key, key_id, replaced = _run(cfg, issue)
    typer.echo(key)  # never wrapped: copied into an encoder
    what = "replaces the previous one" if replaced else "its first"
    err_console.print(
        f"stream key of {escape(account)} (id {key_id}, {what}): shown only now",
        highlight=False,
        soft_wrap=True,
    )
    _disabled_note(cfg)


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, user: UserArgument, config: ConfigOption = None) -> None:
    """Remove an account's stream key: media URLs with it are refused from now on."""
    cfg = load_or_exit(ctx, config)
    username, domain = target(user, cfg)
    account = jid(username, domain)

    async def revoke(db: Database, state: StreamState) -> str | None:
        owner = await state.keys.revoke(account)
        return None if owner is None else owner.key_id

    key_id = _run(cfg, revoke)
    if key_id is None:
        raise fail(f"{account} has no stream key", 1)
    console.print(f"stream key {key_id} of {account} revoked")


@keys_app.command("list")
def keys_list(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Every account with a stream key: the key's id and when it was made (never the key)."""
    cfg = load_or_exit(ctx, config)
    rows = _run(cfg, lambda db, state: state.keys.listing())
    if not rows:
        console.print("no stream keys")
        return
    table = Table(title="stream keys", title_justify="left")
    table.add_column("account", overflow="fold")
    table.add_column("key id", no_wrap=True)
    table.add_column("created (UTC)", no_wrap=True)
    for row in rows:
        table.add_row(Text(row.account), row.key_id, _when(row.created_at))
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

    imported, replaced, skipped, refused = _run(cfg, store)
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
        _note(
            f"{len(weak)} imported keys have fewer than {WEAK_KEY_LENGTH} characters "
            f"(lines {', '.join(map(str, weak[:10]))}{', ...' if len(weak) > 10 else ''}): "
            "guessable; give those users new ones with `chatgate streams keys issue USER`"
        )
    if invalid:
        raise typer.Exit(2)
    if skipped:
        raise typer.Exit(1)


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
            await _require_account(db, *who)
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

    token, expires_at, honoured = _run(cfg, issue)
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
        _note(
            f"no rule honours tokens to {action.value} {stream} (a 'token' or 'anonymous'"
            " grantee on a matching pattern): media servers will refuse this token until one does"
        )
    _disabled_note(cfg)


# ------------------------------------------------------------------ live


@streams_app.command("live")
def live(ctx: typer.Context, config: ConfigOption = None) -> None:
    """List live streams as the server last saved them (at most about 1 s old).

    For each published stream: its publisher, the media server's client id and
    node, since when, how many play it, and whether the media server confirmed
    the session since the server last started.  The running server saves its
    live registry to the database about once a second; this reads that copy.
    """
    cfg = load_or_exit(ctx, config)
    sessions: list[Session] = _run(cfg, lambda db, state: state.snapshot.load())
    viewers: dict[str, list[Viewing]] = {}
    publications: list[Publication] = []
    for session in sessions:
        if isinstance(session, Publication):
            publications.append(session)
        else:
            viewers.setdefault(session.stream, []).append(session)
    if not publications:
        waiting = sum(len(v) for v in viewers.values())
        console.print(
            "no live streams" + (f" ({waiting} players waiting for a publisher)" if waiting else "")
        )
        return
    table = Table(
        title="live streams (as last saved by the server)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    # Names fold in a narrow terminal (never their headers); the short columns never do.
    for header in ("stream", "publisher", "client id", "node"):
        table.add_column(header, overflow="fold", min_width=len(header))
    table.add_column("since (UTC)", no_wrap=True)
    table.add_column("viewers", justify="right", no_wrap=True)
    table.add_column("confirmed", no_wrap=True)
    unconfirmed = 0
    for pub in sorted(publications, key=lambda p: p.stream):
        seen = viewers.get(pub.stream, [])
        unconfirmed += sum(1 for v in seen if not v.confirmed)
        table.add_row(
            Text(pub.stream),
            Text(pub.publisher or "-"),
            Text(pub.client_id),
            Text(pub.node),
            _when(pub.started_at)[:-3],  # to the minute: fits 80 columns
            str(len(seen)),
            "yes" if pub.confirmed else "no",
        )
    if unconfirmed:
        table.caption = f"{unconfirmed} of the viewers are not confirmed yet"
        table.caption_justify = "left"
    console.print(table)
