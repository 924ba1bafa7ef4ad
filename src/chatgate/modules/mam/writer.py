"""The archive's write queue: routing appends, a background task writes batches.

Routing must never wait for the database (`xmpp/stages.py`), so archiving a
message is putting a row in this queue (`offer`, synchronous).  A drain task,
started when the queue stops being empty and ending when it is empty again,
takes up to `batch` rows at a time, lets `screen` drop those the owners'
preferences refuse (it may await storage: preferences, rosters), and writes
the rest in one transaction.  Because the task runs under the server's
`spawn`, a graceful stop waits for the queue to be written.

The queue is bounded by rows and by bytes of stored text.  When it is full a
row is refused (`offer` returns False: the caller then gives the message no
stanza-id, since it will not be in the archive), and the first refusal of an
episode is logged as a warning; the end of the episode, when the queue is half
empty again, is logged with the count of rows refused meanwhile.  A batch the
database refuses is retried twice after a pause, then dropped and logged:
a database outage costs history, never delivery.

One queue per process: each node of a cluster writes what its clients send.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from chatgate.storage.errors import StorageUnavailable
from chatgate.storage.outage_log import OutageLog
from chatgate.storage.repositories.archive import ArchiveRepository, NewArchiveRow

log = logging.getLogger(__name__)

#: seconds to wait before each retry of a batch the database refused
RETRY_PAUSES = (0.5, 2.0)


@dataclass(frozen=True, slots=True)
class QueuedRow:
    """A row waiting to be written; `contact` is the bare JID whose messages the
    owner's preferences decide about (None: a room's row, always kept)."""

    row: NewArchiveRow
    contact: str | None
    size: int
    #: order of arrival (what `flush` waits for)
    seq: int = 0


Screen = Callable[[Sequence[QueuedRow]], Awaitable[list[NewArchiveRow]]]
Spawn = Callable[[Awaitable[None]], None]


class ArchiveWriter:
    def __init__(
        self,
        repository: ArchiveRepository,
        screen: Screen,
        spawn: Spawn,
        *,
        max_rows: int,
        max_bytes: int,
        batch: int,
    ) -> None:
        self._repository = repository
        self._screen = screen
        self._spawn = spawn
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.batch = batch
        self._rows: deque[QueuedRow] = deque()
        self.nbytes = 0
        self._draining = False
        #: the last row offered, and the last one written or dropped
        self._seq = 0
        self._done = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        #: rows refused in the current full episode (None: not full)
        self._refused: int | None = None
        self.refused_total = 0
        self.written_total = 0
        #: one line per database outage, not one per batch
        self._outage = OutageLog(log, "message archive")

    def __len__(self) -> int:
        return len(self._rows)

    def offer(self, row: NewArchiveRow, contact: str | None) -> bool:
        """Queue a row; False (and a log line once per episode) when the queue is full."""
        size = row.size
        if len(self._rows) >= self.max_rows or self.nbytes + size > self.max_bytes:
            if self._refused is None:
                self._refused = 0
                log.warning(
                    "message archive queue full (%d rows, %d bytes): messages are not"
                    " archived until the database catches up",
                    len(self._rows),
                    self.nbytes,
                )
            self._refused += 1
            self.refused_total += 1
            return False
        self._seq += 1
        self._rows.append(QueuedRow(row, contact, size, self._seq))
        self.nbytes += size
        if not self._draining:
            self._draining = True
            self._spawn(self._drain())
        return True

    def take_back(self, owner: str, archive_id: str) -> QueuedRow | None:
        """Remove a row not yet written (a retraction that came first)."""
        for queued in self._rows:
            if queued.row.owner == owner and queued.row.archive_id == archive_id:
                self._rows.remove(queued)
                self.nbytes -= queued.size
                return queued
        return None

    def replace_queued(self, owner: str, archive_id: str, stanza: str) -> bool:
        """Replace the text of a row not yet written; False when none is queued."""
        for index, queued in enumerate(self._rows):
            if queued.row.owner == owner and queued.row.archive_id == archive_id:
                old = queued.row
                row = dataclasses.replace(old, stanza=stanza)
                self._rows[index] = QueuedRow(row, queued.contact, row.size, queued.seq)
                self.nbytes += row.size - queued.size
                return True
        return False

    async def flush(self) -> None:
        """Wait until every row queued so far is written (or dropped); rows queued
        meanwhile are not waited for, so steady traffic cannot hold a query."""
        if not self._draining:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((self._seq, waiter))
        await waiter

    def _wake(self, everyone: bool = False) -> None:
        waiting = []
        for target, waiter in self._waiters:
            if everyone or target <= self._done:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((target, waiter))
        self._waiters = waiting

    async def _drain(self) -> None:
        try:
            while self._rows:
                taken = [self._rows.popleft() for _ in range(min(self.batch, len(self._rows)))]
                self.nbytes -= sum(q.size for q in taken)
                await self._write(taken)
                self._done = taken[-1].seq
                self._wake()
                if self._refused is not None and len(self._rows) <= self.max_rows // 2:
                    log.warning(
                        "message archive queue has room again; %d messages were not archived",
                        self._refused,
                    )
                    self._refused = None
        finally:
            self._draining = False
            self._wake(everyone=True)

    async def _write(self, taken: list[QueuedRow]) -> None:
        for attempt in range(len(RETRY_PAUSES) + 1):
            try:
                rows = await self._screen(taken)
                self.written_total += await self._repository.append(rows)
                return
            except StorageUnavailable as exc:
                # The database is out of reach: one line per outage, not per batch.
                if attempt == len(RETRY_PAUSES):
                    self._outage.failed(f"archiving {len(taken)} messages (dropped)", exc)
                    return
                await asyncio.sleep(RETRY_PAUSES[attempt])
            except Exception as exc:
                if attempt == len(RETRY_PAUSES):
                    log.error(
                        "message archive: %d messages dropped, the database refused them (%s: %s)",
                        len(taken),
                        type(exc).__name__,
                        exc,
                    )
                    return
                log.warning(
                    "message archive: writing %d messages failed (%s); retrying",
                    len(taken),
                    type(exc).__name__,
                )
                await asyncio.sleep(RETRY_PAUSES[attempt])
