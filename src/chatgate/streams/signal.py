"""Change signals (`stores.ChangeSignal`): "the stream keys or rules changed",
from the process that changed them to every process that caches them.

`StampSignal` is the one-host form, the technique of the credentials stamp
(`chatgate.auth.internal`): the changer atomically replaces a small file in the
data directory (write + rename, so the inode changes even when two changes fall
within one mtime tick), and each watcher compares the file's identity (inode,
mtime_ns, size) with the one it saw last.  The ``os.stat`` runs at most once per
`STAMP_CHECK_INTERVAL` (50 ms): `changed` is asked on every hook, and a change
made by ``chatgate streams ...`` in another process takes effect within that.

Each watcher remembers what it saw, so `changed` is True *once* per change for
*each* watcher: give every cache its own (`watcher`), or one consumer would eat
the change another needed.  `LocalSignal` is the same contract inside one
process (tests, a server without a data directory).

Owns: the stamp file of one name.  Must not: know what changed, or read the
file's content (its identity is the signal).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

from chatgate.auth.internal import stamp_id
from chatgate.datadir import make_private_dir, write_private_file
from chatgate.streams.stores import ChangeSignal

__all__ = [
    "STAMP_CHECK_INTERVAL",
    "STREAMS_STAMP",
    "AnySignal",
    "LocalSignal",
    "SignalFactory",
    "StampSignal",
    "WatchableSignal",
]

#: The stamp file of the stream authority's keys and rules.
STREAMS_STAMP: Final = "streams.stamp"

#: Seconds between two ``os.stat`` of a stamp file (the credentials stamp's figure).
STAMP_CHECK_INTERVAL: Final = 0.05


class WatchableSignal(ChangeSignal, Protocol):
    """A `ChangeSignal` that makes more watchers of the same changes."""

    def watcher(self) -> WatchableSignal: ...


#: Makes the signal of the stamp `name` in `data_dir`: `StampSignal` itself on one
#: host; `chatgate.cluster.signal.StreamSignals(node)` on a cluster node (the stamp
#: and a Redis channel), so that the other machines learn too.
SignalFactory = Callable[[Path, str], WatchableSignal]


class StampSignal:
    """`ChangeSignal` through the file ``data_dir/name`` (module docstring)."""

    def __init__(
        self,
        data_dir: Path,
        name: str = STREAMS_STAMP,
        *,
        interval: float = STAMP_CHECK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Changes made before this watcher was made are not reported.  `clock` is
        monotonic seconds (tests pass their own)."""
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"a stamp is a file name, not {name!r}")
        self.path = Path(data_dir) / name
        self._interval = interval
        self._clock = clock
        self._seen = stamp_id(self.path)
        self._checked = float("-inf")
        self._raised = False

    def watcher(self) -> StampSignal:
        """Another watcher of the same file, with its own memory of what it saw."""
        return StampSignal(
            self.path.parent, self.path.name, interval=self._interval, clock=self._clock
        )

    def raise_(self) -> None:
        """Replace the stamp file (0600 in a 0700 folder, see `chatgate.datadir`);
        this watcher reports the change at its next `changed`, without waiting
        for its next stat."""
        make_private_dir(self.path.parent)
        write_private_file(self.path, f"{uuid.uuid4().hex}\n".encode("ascii"))
        self._raised = True

    def changed(self) -> bool:
        if self._raised:
            self._raised = False
            self._seen = stamp_id(self.path)
            self._checked = self._clock()
            return True
        now = self._clock()
        if now < self._checked + self._interval:
            return False
        self._checked = now
        current = stamp_id(self.path)
        if current == self._seen:
            return False
        self._seen = current
        return True


class _Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class LocalSignal:
    """`ChangeSignal` within one process: watchers share a change count."""

    def __init__(self, _count: _Count | None = None) -> None:
        self._count = _count if _count is not None else _Count()
        self._seen = self._count.value

    def watcher(self) -> LocalSignal:
        """Another watcher of the same changes, with its own memory of what it saw."""
        return LocalSignal(self._count)

    def raise_(self) -> None:
        self._count.value += 1

    def changed(self) -> bool:
        value = self._count.value
        if value == self._seen:
            return False
        self._seen = value
        return True


class AnySignal:
    """Changed when any of its signals changed; raising raises the first only.

    For a cache that depends on more than one kind of state: the stream keys'
    owners are gone when a key changes (the streams stamp, which the key store
    raises) and when an account is deleted (the credentials stamp, which
    ``chatgate user del`` and unregistration raise)."""

    def __init__(self, first: ChangeSignal, *others: ChangeSignal) -> None:
        self._signals = (first, *others)

    def raise_(self) -> None:
        self._signals[0].raise_()

    def changed(self) -> bool:
        # Ask every one: each forgets its change when asked.
        return any([signal.changed() for signal in self._signals])
