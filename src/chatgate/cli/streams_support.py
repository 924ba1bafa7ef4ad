"""What the `chatgate streams` commands share: opening the stream state on the
configured database, the configured rules, and how times and notes are shown."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from rich.markup import escape

from chatgate.cli.common import (
    err_console,
    fail,
    jid,
    plain_console,
    with_db,
)
from chatgate.config import Config
from chatgate.storage.database import Database
from chatgate.streams.policy import Rule
from chatgate.streams.state import StreamState, open_stream_state

T = TypeVar("T")
console = plain_console()

# ------------------------------------------------------------------ helpers


def run_on_state(cfg: Config, work: Callable[[Database, StreamState], Awaitable[T]]) -> T:
    """Open the database and the authority's state on it, run `work`, close.

    A change is signalled through the stamp file (the servers on this data
    directory) and, with `[cluster] enabled`, on the cluster's Redis channel too,
    so that every node re-reads it, not only the nodes on this host."""

    async def run(db: Database) -> T:
        if cfg.cluster.enabled:
            from chatgate.cluster.signal import CommandLineSignals

            signals = CommandLineSignals(cfg.cluster)
            state = await open_stream_state(db, cfg.data_dir, signals=signals)
        else:
            state = await open_stream_state(db, cfg.data_dir)
        return await work(db, state)

    return asyncio.run(with_db(cfg, run))


def when(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S")


def note(text: str) -> None:
    err_console.print(f"[yellow]note:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


def disabled_note(cfg: Config) -> None:
    if not cfg.streams.enabled:
        note("[streams] enabled is false in the configuration: media servers' hooks are off")


def configured_rules(cfg: Config) -> list[Rule]:
    # Validated when the configuration loaded (`StreamsOptions`).
    return [Rule.parse(text) for text in cfg.streams.rules]


async def require_account(db: Database, username: str, domain: str) -> None:
    if not await db.accounts.exists(username, domain):
        raise fail(f"no such user {jid(username, domain)} (`chatgate user add` creates it)", 1)


def read_text(file: str) -> str:
    """A UTF-8 file's text (a byte-order mark is allowed), or standard input for -."""
    try:
        if file == "-":
            return sys.stdin.buffer.read().decode("utf-8-sig")
        return Path(file).read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {exc}", 2) from None
