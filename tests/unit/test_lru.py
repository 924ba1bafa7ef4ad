"""LruCache: both bounds hold after every operation, the byte count is true, and
recency follows `get` but not the `mapping`/`peek` fast paths."""

from __future__ import annotations

import sys
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.lru import ENTRY_OVERHEAD, LruCache, weigh_strings


def weight(key: str, value: str) -> int:
    return len(key) + len(value)


def small(max_entries: int = 3, max_bytes: int = 10_000, **kw: object) -> LruCache[str, str]:
    return LruCache(max_entries, max_bytes, weight, entry_overhead=0, **kw)  # type: ignore[arg-type]


def accounted(cache: LruCache[str, str]) -> int:
    return sum(weight(k, v) for k, v in cache.mapping.items())


def test_entry_bound_evicts_the_least_recently_used() -> None:
    cache = small()
    for key in "abcd":
        cache.put(key, key.upper())
    assert list(cache) == ["b", "c", "d"]
    assert cache.evictions == 1
    assert cache.get("a") is None


def test_get_refreshes_recency() -> None:
    cache = small()
    for key in "abc":
        cache.put(key, "")
    assert cache.get("a") == ""
    cache.put("d", "")
    assert "b" not in cache
    assert list(cache) == ["c", "a", "d"]


def test_peek_and_mapping_do_not_refresh_recency() -> None:
    cache = small()
    for key in "abc":
        cache.put(key, key)
    assert cache.peek("a") == "a"
    assert cache.mapping["a"] == "a"
    cache.put("d", "d")
    assert list(cache) == ["b", "c", "d"]
    assert cache.peek("zz", "default") == "default"


def test_byte_bound_holds_with_big_unique_keys() -> None:
    cache = small(max_entries=1_000_000, max_bytes=100_000)
    for i in range(2_000):
        key = f"{i:08d}" + "x" * (i % 997)
        assert cache.put(key, "v")
        assert cache.nbytes <= 100_000
        assert cache.nbytes == accounted(cache)
    assert cache.evictions > 0
    assert len(cache) < 2_000


def test_replacing_an_entry_is_not_counted_twice() -> None:
    cache = small()
    cache.put("a", "x" * 100)
    cache.put("a", "y")
    assert cache.nbytes == 2
    assert cache.stats().inserts == 2
    assert len(cache) == 1


def test_an_entry_over_max_entry_bytes_is_not_stored_and_drops_a_stale_one() -> None:
    cache = small(max_bytes=1000, max_entry_bytes=100)
    assert cache.put("k", "v")
    assert not cache.put("k", "v" * 200)
    assert "k" not in cache
    assert cache.nbytes == 0
    assert cache.put("k", "v" * 99)


def test_pop_and_clear_keep_the_count_true() -> None:
    cache = small()
    cache.put("a", "aaa")
    cache.put("b", "bb")
    assert cache.pop("a") == "aaa"
    assert cache.pop("a", "gone") == "gone"
    assert cache.nbytes == 3
    cache.clear()
    assert (len(cache), cache.nbytes) == (0, 0)


def test_on_evict_sees_evictions_only() -> None:
    seen: list[tuple[str, str]] = []
    cache = small(max_entries=2, on_evict=lambda k, v: seen.append((k, v)))
    cache.put("a", "1")
    cache.put("b", "2")
    cache.pop("b")
    cache.put("c", "3")
    cache.put("d", "4")
    assert seen == [("a", "1")]


def test_oldest_is_the_next_to_go() -> None:
    cache = small()
    assert cache.oldest() is None
    cache.put("a", "1")
    cache.put("b", "2")
    cache.get("a")
    assert cache.oldest() == ("b", "2")


def test_stats() -> None:
    cache = small(max_entries=2)
    for key in "abc":
        cache.put(key, "")
    assert tuple(cache.stats()) == (2, 2, 2, 10_000, 3, 1)


@pytest.mark.parametrize(
    "args", [(0, 10), (10, 0), (10, 10, {"max_entry_bytes": 11}), (1, 1, {"entry_overhead": -1})]
)
def test_bad_limits_are_refused(args: tuple[object, ...]) -> None:
    kwargs = args[2] if len(args) > 2 else {}
    with pytest.raises(ValueError):
        LruCache(args[0], args[1], **kwargs)  # type: ignore[arg-type]


def test_weigh_strings_counts_tuple_items() -> None:
    pair = ("urn:example", "name")
    assert weigh_strings("k", pair) == (
        sys.getsizeof("k") + sys.getsizeof(pair) + sum(map(sys.getsizeof, pair))
    )


def test_the_byte_count_covers_the_real_memory() -> None:
    """What the cache says it holds is at least what it really holds (tracemalloc),
    filling and then evicting, and not wildly more: the per-entry overhead is honest."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache: LruCache[str, tuple[str, str]] = LruCache(8_000, 1 << 30)
        for i in range(24_000):
            cache.put(f"urn:xmpp:test:{i}\x01name{i}", (f"urn:xmpp:test:{i}", f"name{i}"))
            if i % 500 == 499:
                held = tracemalloc.get_traced_memory()[0] - before
                assert held <= cache.nbytes <= 2 * held, i
    finally:
        tracemalloc.stop()
    assert cache.evictions == 16_000
    assert cache.nbytes == sum(
        weigh_strings(k, v) + ENTRY_OVERHEAD for k, v in cache.mapping.items()
    )


# ---------------------------------------------------------------------------- model check

_ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "get", "peek", "pop"]),
        st.sampled_from("abcdefgh"),
        st.integers(min_value=0, max_value=60),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_ops, st.integers(min_value=1, max_value=5), st.integers(min_value=20, max_value=150))
def test_behaves_like_a_simple_model(
    ops: list[tuple[str, str, int]], max_entries: int, max_bytes: int
) -> None:
    cache = small(max_entries=max_entries, max_bytes=max_bytes, max_entry_bytes=min(max_bytes, 50))
    model: list[tuple[str, str]] = []  # least recently used first
    for op, key, n in ops:
        found = next((v for k, v in model if k == key), None)
        if op == "put":
            value = "v" * n
            model = [(k, v) for k, v in model if k != key]
            stored = cache.put(key, value)
            assert stored == (len(key) + n <= min(max_bytes, 50))
            if stored:
                model.append((key, value))
                while len(model) > max_entries or sum(weight(k, v) for k, v in model) > max_bytes:
                    model.pop(0)
        elif op == "get":
            assert cache.get(key) == found
            if found is not None:
                model = [(k, v) for k, v in model if k != key] + [(key, found)]
        elif op == "peek":
            assert cache.peek(key) == found
        else:
            assert cache.pop(key) == found
            model = [(k, v) for k, v in model if k != key]
        assert list(cache.mapping.items()) == model
        assert cache.nbytes == accounted(cache) <= max_bytes
        assert len(cache) <= max_entries
