"""A least-recently-used map bounded by entries *and* by bytes: the one cache helper.

Owns: keeping derived data (parsed names, prepared addresses, loaded keys, counters)
in memory under two limits at once, and saying how much it holds.
Must not: do I/O, read the clock, log, or know what it caches.

Why both bounds.  An entry count alone lets an attacker choose how big each entry is:
the parser's name cache held 4,096 entries of 200 KB namespaces (536 MB, pinned after
the attacker left), the address cache 65,536 2 KB addresses (331 MB).  A byte bound
alone lets millions of tiny entries through, each costing a hundred bytes of
bookkeeping the key's length does not show.  `LruCache` evicts the least recently used
entries until both hold, and never stores an entry heavier than `max_entry_bytes`.

Weighing.  The caller passes `weigh(key, value)`: the bytes the entry keeps alive,
*excluding* the map's own bookkeeping, which the cache adds (`entry_overhead`; measured
with tracemalloc for CPython 3.11's OrderedDict: 92-116 bytes an entry while filling,
up to 144 for a full cache that keeps evicting, deleted slots waiting for compaction).
`weigh` is asked again when the entry leaves, so it must give the same answer for
an entry as long as it is cached: weigh immutable things (the key's length, the
value's strings), or a constant for a mutable record; a caller that changes a value's
size in place must `put` it again.  `sys.getsizeof` is a fair weigher for strings and
bytes; `weigh_strings` adds them up for the common cases.

Hot paths.  `get` refreshes recency (one C-level `move_to_end`).  A cache hit on every
stanza can skip even that: `mapping` is the live map, and subscripting it is a plain
dict look-up (measured no slower than the module dicts it replaced).  Hits through it
do not refresh recency, so such a cache evicts in insertion order; for a cache of
values that are cheap to recompute (names, addresses) that is what is wanted: a hot
entry evicted by a flood costs one recomputation and comes back.  Never write
through `mapping`: the byte count would no longer be true.

Not thread-safe: one event loop owns each cache.  `Cache` is the interface a shared
store (Redis, a cluster directory) could implement for caches worth sharing; the
in-process caches of derived data here never need to be.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Final, Generic, NamedTuple, Protocol, TypeVar

__all__ = ["ENTRY_OVERHEAD", "Cache", "CacheStats", "LruCache", "weigh_strings"]

K = TypeVar("K")
V = TypeVar("V")
K_contra = TypeVar("K_contra", contravariant=True)

#: Bytes charged per entry for the map itself (an OrderedDict slot, its link node, the
#: hash table's slack and deleted slots), on top of what `weigh` reports; see above.
ENTRY_OVERHEAD: Final = 160

_MISSING: Final = object()
_getsizeof = sys.getsizeof


class CacheStats(NamedTuple):
    """What a cache holds and has done, for metrics and tests."""

    entries: int
    bytes: int
    max_entries: int
    max_bytes: int
    inserts: int
    evictions: int


class Cache(Protocol[K_contra, V]):
    """The operations a bounded cache offers (an LRU here; a shared store later)."""

    def get(self, key: K_contra, default: V | None = None) -> V | None: ...

    def put(self, key: K_contra, value: V) -> bool: ...

    def pop(self, key: K_contra, default: V | None = None) -> V | None: ...

    def clear(self) -> None: ...

    def __len__(self) -> int: ...


def weigh_strings(key: object, value: object) -> int:
    """`sys.getsizeof` of the key plus the value, and of each item when the value is a
    tuple: right for str/bytes keys with str, bytes or tuple-of-str values."""
    size = _getsizeof(key) + _getsizeof(value)
    if type(value) is tuple:
        for item in value:
            size += _getsizeof(item)
    return size


class LruCache(Generic[K, V]):
    """A map of at most `max_entries` entries weighing at most `max_bytes` in total.

    See the module docstring for weighing and the `mapping` fast path.  `on_evict`, if
    given, is called with each entry pushed out by the bounds (not for `pop`/`clear`).
    Limits must be positive; `max_entry_bytes` defaults to `max_bytes`.
    """

    __slots__ = (
        "_data",
        "_on_evict",
        "_overhead",
        "_weigh",
        "evictions",
        "inserts",
        "mapping",
        "max_bytes",
        "max_entries",
        "max_entry_bytes",
        "nbytes",
    )

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        weigh: Callable[[K, V], int] = weigh_strings,
        *,
        max_entry_bytes: int | None = None,
        entry_overhead: int = ENTRY_OVERHEAD,
        on_evict: Callable[[K, V], None] | None = None,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be positive")
        if max_entry_bytes is None:
            max_entry_bytes = max_bytes
        if not 0 < max_entry_bytes <= max_bytes:
            raise ValueError("max_entry_bytes must be positive and at most max_bytes")
        if entry_overhead < 0:
            raise ValueError("entry_overhead must not be negative")
        self._data: OrderedDict[K, V] = OrderedDict()
        #: The live map, for look-ups on a hot path (no recency refresh; never write).
        #: A plain attribute, not a property: a parser reads it each time it is made.
        #: `_data` is never replaced (`clear` empties it), so this stays the live map.
        self.mapping: Mapping[K, V] = self._data
        self._weigh = weigh
        self._overhead = entry_overhead
        self._on_evict = on_evict
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        #: bytes accounted for the entries held (their weights plus the overhead)
        self.nbytes = 0
        self.inserts = 0
        self.evictions = 0

    # ------------------------------------------------------------ reading

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value, now the most recently used; `default` when absent."""
        data = self._data
        value = data.get(key, _MISSING)
        if value is _MISSING:
            return default
        data.move_to_end(key)
        return value  # type: ignore[return-value]

    def peek(self, key: K, default: V | None = None) -> V | None:
        """The value without refreshing its recency; `default` when absent."""
        return self._data.get(key, default)

    def oldest(self) -> tuple[K, V] | None:
        """The least recently used entry, left in place (for expiry sweeps)."""
        for item in self._data.items():
            return item
        return None

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        """Keys from the least to the most recently used."""
        return iter(self._data)

    def stats(self) -> CacheStats:
        return CacheStats(
            len(self._data),
            self.nbytes,
            self.max_entries,
            self.max_bytes,
            self.inserts,
            self.evictions,
        )

    # ------------------------------------------------------------ writing

    def put(self, key: K, value: V) -> bool:
        """Store `value` as the most recently used entry, evicting as the bounds need.

        Returns False, and stores nothing, when the entry alone weighs more than
        `max_entry_bytes` (an entry already under `key` is dropped then: it is stale).
        """
        data = self._data
        weigh = self._weigh
        overhead = self._overhead
        old = data.pop(key, _MISSING)
        if old is not _MISSING:
            self.nbytes -= weigh(key, old) + overhead  # type: ignore[arg-type]
        size = weigh(key, value) + overhead
        if size > self.max_entry_bytes:
            return False
        data[key] = value
        self.nbytes += size
        self.inserts += 1
        if len(data) > self.max_entries or self.nbytes > self.max_bytes:
            self._shrink()
        return True

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove and return the value; `default` when absent."""
        value = self._data.pop(key, _MISSING)
        if value is _MISSING:
            return default
        self.nbytes -= self._weigh(key, value) + self._overhead  # type: ignore[arg-type]
        return value  # type: ignore[return-value]

    def clear(self) -> None:
        self._data.clear()
        self.nbytes = 0

    def _shrink(self) -> None:
        """Evict from the least recently used end until both bounds hold.  The newest
        entry weighs at most `max_entry_bytes` <= `max_bytes`, so it always stays."""
        data = self._data
        weigh = self._weigh
        overhead = self._overhead
        on_evict = self._on_evict
        max_entries = self.max_entries
        max_bytes = self.max_bytes
        while len(data) > max_entries or self.nbytes > max_bytes:
            key, value = data.popitem(last=False)
            self.nbytes -= weigh(key, value) + overhead
            self.evictions += 1
            if on_evict is not None:
                on_evict(key, value)
