"""The live registry's snapshot: saved while chatgate runs, taken back at start.

The live registry (`live.LocalLiveStreams`) is in memory; without a snapshot a
restart of chatgate forgets who is publishing, and a second publisher could
take a stream that is still live.  `SnapshotKeeper` saves the registry into a
`LiveSnapshot` when it changed, at most once per `interval` whatever the hook
rate, once more at stop, and restores it at start, every session unconfirmed
(`LocalLiveStreams.restore`: a stream that ended while chatgate was down is not
invented, it expires after the grace unless its media server calls back).

`DatabaseLiveSnapshot` keeps it in the database (``live_sessions``) and writes
only the difference from what it saved last, so a save costs what changed, not
the registry's size.  It assumes it is the table's one writer: the snapshot
belongs to the process that holds the live registry (several processes, each
with its own registry, need a shared `LiveStreams`, not snapshots).
`MemoryLiveSnapshot` is for tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from chatgate.storage.repositories.streams import LiveSessionRow
from chatgate.streams.live import LocalLiveStreams, Publication, Session, Viewing
from chatgate.streams.stores import LiveSnapshot

if TYPE_CHECKING:
    from chatgate.storage.repositories.streams import LiveSessionRepository

__all__ = [
    "DEFAULT_INTERVAL",
    "DatabaseLiveSnapshot",
    "MemoryLiveSnapshot",
    "SnapshotKeeper",
]

log = logging.getLogger(__name__)

#: Seconds between two saves at most.
DEFAULT_INTERVAL: Final = 1.0

_PUBLISH: Final = "publish"
_PLAY: Final = "play"


def _row(session: Session) -> LiveSessionRow:
    if isinstance(session, Publication):
        kind, identity = _PUBLISH, session.publisher
    else:
        kind, identity = _PLAY, session.viewer
    return LiveSessionRow(
        kind,
        session.stream,
        identity,
        session.client_id,
        session.node,
        session.credential,
        float(session.started_at),
        float(session.last_seen),
        bool(session.confirmed),
    )


def _session(row: LiveSessionRow) -> Session | None:
    cls: type[Publication] | type[Viewing]
    if row.kind == _PUBLISH:
        cls = Publication
    elif row.kind == _PLAY:
        cls = Viewing
    else:
        return None
    return cls(
        row.stream,
        row.identity,
        row.client_id,
        row.node,
        row.started_at,
        row.last_seen,
        row.confirmed,
        row.credential,
    )


class DatabaseLiveSnapshot:
    """`LiveSnapshot` on the database; saves write the difference (module docstring)."""

    def __init__(self, repository: LiveSessionRepository) -> None:
        self._repository = repository
        #: what the table holds as far as this object knows; None: unknown, replace it
        self._saved: dict[tuple[str, str, str, str], LiveSessionRow] | None = None
        self._lock = asyncio.Lock()

    async def save(self, sessions: Sequence[Session]) -> None:
        rows = {row.key: row for row in map(_row, sessions)}
        async with self._lock:
            saved, self._saved = self._saved, None  # unknown until this save commits
            if saved is None:
                await self._repository.replace(list(rows.values()))
            else:
                removed = [key for key, row in saved.items() if rows.get(key) != row]
                added = [row for key, row in rows.items() if saved.get(key) != row]
                if removed or added:
                    await self._repository.change(removed, added)
            self._saved = rows

    async def load(self) -> list[Session]:
        async with self._lock:
            rows = await self._repository.load()
            self._saved = {row.key: row for row in rows}
        sessions = []
        for row in rows:
            session = _session(row)
            if session is None:
                log.warning("live snapshot: a saved session of kind %r ignored", row.kind)
            else:
                sessions.append(session)
        return sessions


class MemoryLiveSnapshot:
    """`LiveSnapshot` in memory (tests; a server without storage needs none)."""

    def __init__(self) -> None:
        self._sessions: list[Session] = []

    async def save(self, sessions: Sequence[Session]) -> None:
        self._sessions = list(sessions)

    async def load(self) -> list[Session]:
        return list(self._sessions)


class SnapshotKeeper:
    """Saves `live` into `snapshot` while running (module docstring).

    `start` restores what was saved and starts the saving task; `stop` ends it
    and saves what changed since.  A failed save is logged (once until one
    succeeds again) and retried at the next interval; it never stops the task.
    """

    def __init__(
        self,
        live: LocalLiveStreams,
        snapshot: LiveSnapshot,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`interval` in seconds (> 0); `clock` gives Unix seconds (wall time, as
        the registry's ``now``)."""
        if not interval > 0:
            raise ValueError(f"interval must be positive seconds, not {interval!r}")
        self.live = live
        self.snapshot = snapshot
        self.interval = interval
        self._clock = clock
        self._saved_version: int | None = None
        self._task: asyncio.Task[None] | None = None
        #: the interval's save under way, which `stop` lets finish
        self._saving: asyncio.Future[None] | None = None
        self._failing = False
        #: saves made (tests, metrics)
        self.saves = 0

    async def start(self) -> int:
        """Restore the saved sessions (unconfirmed) and start saving; how many came
        back.  A snapshot that cannot be read is logged and skipped: the registry
        then starts empty, which invents nothing."""
        if self._task is not None:
            raise RuntimeError("the snapshot keeper is already running")
        restored = 0
        try:
            saved = await self.snapshot.load()
        except Exception:
            log.exception("live snapshot: could not be read; the registry starts empty")
        else:
            restored = self.live.restore(saved, self._clock())
            if not saved and not self.live.sessions():
                self._saved_version = self.live.version  # both empty: nothing to save
            if restored or saved:
                log.info(
                    "live snapshot: %d of %d sessions restored, unconfirmed",
                    restored,
                    len(saved),
                )
        self._task = asyncio.create_task(self._run(), name="live-snapshot")
        return restored

    async def stop(self) -> None:
        """End the saving task and save once more if anything changed."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # unlike `await task`, lets our own cancel through
        saving, self._saving = self._saving, None
        if saving is not None and not saving.done():
            # Never cut short: a save cancelled inside its SQLite transaction can
            # leave its connection holding the write lock, and the last save below
            # then waited for it in vain ("database is locked", seen under load).
            await asyncio.wait({saving})
        try:
            await self.save()
        except Exception:
            log.exception("live snapshot: the last save failed")

    async def save(self) -> bool:
        """Save now if the registry changed since the last save; whether it saved.
        The task calls it once per interval; raises what the snapshot raises."""
        live = self.live
        version = live.version
        if version == self._saved_version:
            return False
        sessions = live.sessions()  # the same moment as `version`: no await between
        await self.snapshot.save(sessions)
        self._saved_version = version
        self.saves += 1
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._saving = asyncio.ensure_future(self._save_logged())
            await asyncio.shield(self._saving)  # `stop` cancels the loop, not the save

    async def _save_logged(self) -> None:
        """One interval's save; a failure is logged once until a save succeeds."""
        try:
            await self.save()
        except Exception as exc:
            if not self._failing:
                log.warning("live snapshot: save failed, retrying: %s", exc, exc_info=True)
            self._failing = True
        else:
            if self._failing:
                log.info("live snapshot: saving again")
            self._failing = False
