"""XEP-0357 push rate limiting: at most one notification per registration per
interval (`NotificationLimiter`), its in-process implementation and its answers.

They live apart from the module (`chatgate.modules.push`) so that the cluster's
limiter (`chatgate.cluster.push`), which answers with `Send`/`Defer` and falls
back on a `LocalNotificationLimiter` while Redis is away, imports only this small
file: the module chooses the cluster limiter at setup, and importing the module
back would close an import cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from chatgate.lru import LruCache


@dataclass(slots=True)
class _Slot:
    last: float
    count: int = 0
    scheduled: bool = False
    sender: str = ""
    body: str = ""


@dataclass(frozen=True, slots=True)
class Send:
    """Notify now, counting `count` messages."""

    count: int


@dataclass(frozen=True, slots=True)
class Defer:
    """Notify after `delay` seconds (`NotificationLimiter.flush` then)."""

    delay: float


Decision = Send | Defer | None
Flushed = tuple[int, str, str] | None


class NotificationLimiter(Protocol):
    """At most one notification per registration per interval, the rest counted in.

    `LocalNotificationLimiter` is one process's (answers at once); in a cluster
    `chatgate.cluster.push.RedisNotificationLimiter` keeps each registration's
    slot in Redis (answers are awaited), since a user's messages are routed on
    whichever node their senders are on.  `now` is this process's loop time."""

    def admit(self, key: str, now: float, sender: str, body: str) -> Decision | Awaitable[Decision]:
        """A message for registration `key`: send now, defer (the first message of
        an interval already used), or nothing (a deferred notification will count it)."""
        ...

    def flush(self, key: str, now: float) -> Flushed | Awaitable[Flushed]:
        """The deferred notification's (count, last sender, last body); None when the
        slot was evicted meanwhile."""
        ...


class LocalNotificationLimiter:
    def __init__(self, interval: float, max_entries: int) -> None:
        self.interval = interval
        self._slots: LruCache[str, _Slot] = LruCache(
            max_entries, max_entries * 1024, _weigh_slot, max_entry_bytes=1024
        )

    def admit(self, key: str, now: float, sender: str, body: str) -> Send | Defer | None:
        slot = self._slots.get(key)
        if slot is None or now - slot.last >= self.interval:
            if slot is not None and slot.scheduled:
                slot.count += 1
                slot.sender, slot.body = sender, body
                return None
            self._slots.put(key, _Slot(now))
            return Send(1)
        slot.count += 1
        slot.sender, slot.body = sender, body
        if slot.scheduled:
            return None
        slot.scheduled = True
        return Defer(slot.last + self.interval - now)

    def flush(self, key: str, now: float) -> tuple[int, str, str] | None:
        slot = self._slots.get(key)
        if slot is None or not slot.count:
            return None
        found = (slot.count, slot.sender, slot.body)
        self._slots.put(key, _Slot(now))
        return found


def _weigh_slot(key: str, slot: _Slot) -> int:
    return 100 + len(key) + len(slot.sender) + len(slot.body)
