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

import contextlib
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from chatgate.cli.common import (
    ConfigOption,
    command_group,
    fail,
    load_or_exit,
    plain_console,
)
from chatgate.cli.stream_keys import keys_app
from chatgate.cli.stream_tokens import tokens_app
from chatgate.cli.streams_support import (
    configured_rules,
    disabled_note,
    note,
    read_text,
    run_on_state,
    when,
)
from chatgate.storage.database import Database
from chatgate.streams.live import Publication, Session, Viewing
from chatgate.streams.policy import Rule
from chatgate.streams.rule_store import MAX_RULE_LENGTH
from chatgate.streams.rules_file import format_rules_file, parse_rules_file
from chatgate.streams.state import StreamState

__all__ = ["streams_app"]

streams_app = command_group(
    "The stream authority: rules, stream keys, tokens and live streams of media servers."
)
rules_app = command_group("Who may publish and play which streams.")
streams_app.add_typer(rules_app, name="rules", help="Who may publish and play which streams.")
streams_app.add_typer(
    keys_app, name="keys", help="Per-account stream keys (a publisher's secret in its media URL)."
)
streams_app.add_typer(
    tokens_app, name="tokens", help="Signed, expiring tokens for one stream and action."
)
console = plain_console()

# ------------------------------------------------------------------ rules


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
    configured = configured_rules(cfg)
    stored = _parsed(run_on_state(cfg, lambda db, state: state.rules.rules()))
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
    if parsed in configured_rules(cfg):
        raise fail(f"{text!r} is already configured in chatgate.toml [streams] rules", 1)

    async def add(db: Database, state: StreamState) -> str | None:
        for stored_text, stored, _ in _parsed(await state.rules.rules()):
            if stored == parsed:
                return f"{stored_text!r} is already stored"
        if not await state.rules.add(text):
            return f"{text!r} is already stored"
        return None

    problem = run_on_state(cfg, add)
    if problem:
        raise fail(problem, 1)
    console.print(f"rule added: {text}")
    disabled_note(cfg)


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

    removed = run_on_state(cfg, remove)
    configured = False
    with contextlib.suppress(ValueError):
        configured = Rule.parse(text) in configured_rules(cfg)
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
        note("the same rule is also in chatgate.toml [streams] rules: it still applies")


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
    configured = configured_rules(cfg)
    stored = _parsed(run_on_state(cfg, lambda db, state: state.rules.rules()))
    valid = [r for _, r, _ in stored if r is not None]
    for stored_text, r, reason in stored:
        if r is None:
            note(f"stored rule {stored_text!r} left out: {reason}")
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
    parsed = parse_rules_file(read_text(file))
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
    configured = set(configured_rules(cfg))

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

    added, in_config, in_store = run_on_state(cfg, store)
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
    sessions: list[Session] = run_on_state(cfg, lambda db, state: state.snapshot.load())
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
            when(pub.started_at)[:-3],  # to the minute: fits 80 columns
            str(len(seen)),
            "yes" if pub.confirmed else "no",
        )
    if unconfirmed:
        table.caption = f"{unconfirmed} of the viewers are not confirmed yet"
        table.caption_justify = "left"
    console.print(table)
