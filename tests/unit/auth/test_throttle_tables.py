"""The throttles' tables: `chatgate.lru.LruCache` with expiring values (`live`,
`prune`), bounded by entries whatever the keys weigh."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from chatgate.auth.throttle.tables import (
    MAX_KEY_BYTES,
    account_key,
    expiring_table,
    live,
    locate,
    prune,
)
from chatgate.lru import LruCache


@dataclass(slots=True)
class State:
    expires: float
    count: int = 0


#: digits -> characters outside the BMP (4 bytes each in a str)
WIDEN = str.maketrans("0123456789", "".join(chr(0x10FFF0 + d) for d in range(10)))


def table(max_entries: int = 3) -> LruCache[str, State]:
    return expiring_table(max_entries, 48)


def test_live_touches_a_live_entry_and_drops_an_expired_one() -> None:
    t = table()
    t.put("a", State(10.0))
    t.put("b", State(5.0))
    t.put("c", State(10.0))
    assert live(t, "a", 1.0) is not None  # touched: now the most recent
    assert list(t) == ["b", "c", "a"]
    assert live(t, "b", 5.0) is None  # expires at 5.0: gone at 5.0
    assert "b" not in t
    assert live(t, "zz", 0.0) is None


def test_a_state_changed_in_place_keeps_the_byte_count_true() -> None:
    t = table()
    state = State(10.0)
    t.put("a", state)
    before = t.nbytes
    state.count += 1000
    live(t, "a", 0.0)
    t.pop("a")
    assert t.nbytes == 0 < before


def test_the_least_recently_touched_entry_is_evicted_and_counted() -> None:
    t = table()
    for key in "abc":
        t.put(key, State(10.0))
    live(t, "a", 0.0)
    t.put("d", State(10.0))
    assert list(t) == ["c", "a", "d"]
    assert t.evictions == 1


def test_prune_drops_expired_entries_from_the_old_end_only() -> None:
    t = table(10)
    t.put("old", State(1.0))
    t.put("older-but-long", State(100.0))
    t.put("expired-behind", State(1.0))
    assert prune(t, 2.0) == 1  # stops at the first live entry: best effort
    assert list(t) == ["older-but-long", "expired-behind"]
    assert prune(t, 200.0) == 2
    assert len(t) == 0 and t.nbytes == 0


def test_the_entry_bound_binds_even_with_the_heaviest_keys() -> None:
    """The byte bound is derived from `max_entries` and `MAX_KEY_BYTES`, so the tables
    keep exactly `max_entries` entries whatever the keys (the behaviour of the entry-
    bounded tables they replaced)."""
    pairs: LruCache[tuple[str, str], State] = expiring_table(100, 48)
    for i in range(300):
        key = f"{i:03d}".translate(WIDEN) * 21 + "\U0010ffff"  # 64 of the widest characters
        assert len(key) == 64
        pairs.put((key, key), State(1.0))
    assert len(pairs) == 100
    assert pairs.evictions == 200
    assert pairs.nbytes <= pairs.max_bytes


def test_keys_weigh_at_most_max_key_bytes() -> None:
    """`locate` and `account_key` cut what a peer controls to 64 characters."""
    address = locate("\U0010ffff" * 10_000, 64).key
    account = account_key("\U0010ffff" * 64)
    long_account = account_key("\U0010ffff" * 65)
    assert len(address) == 64 and len(long_account) == 33
    size = sys.getsizeof((account, address)) + sys.getsizeof(account) + sys.getsizeof(address)
    assert size <= MAX_KEY_BYTES
