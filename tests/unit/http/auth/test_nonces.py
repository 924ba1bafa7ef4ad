"""The local nonce-count table: each nc is taken once per nonce, and a bounded
table never forgets a nonce in a way that would take an old nc again."""

from __future__ import annotations

from chatgate.http.auth.nonces import LocalNonceCounts, NonceUse


async def test_counts_must_rise() -> None:
    counts = LocalNonceCounts(lifetime=300)
    assert await counts.advance("n", 100, 1, 100) is NonceUse.FRESH
    assert await counts.advance("n", 100, 1, 101) is NonceUse.REPLAYED
    assert await counts.advance("n", 100, 3, 102) is NonceUse.FRESH
    assert await counts.advance("n", 100, 2, 103) is NonceUse.REPLAYED
    assert await counts.advance("other", 100, 1, 103) is NonceUse.FRESH


async def test_evicted_nonces_are_forgotten_not_reopened() -> None:
    counts = LocalNonceCounts(lifetime=300, max_entries=2)
    assert await counts.advance("a", 10, 1, 20) is NonceUse.FRESH
    assert await counts.advance("b", 11, 1, 20) is NonceUse.FRESH
    assert await counts.advance("c", 12, 1, 20) is NonceUse.FRESH  # pushes "a" out
    assert len(counts) == 2
    assert await counts.advance("a", 10, 1, 21) is NonceUse.FORGOTTEN
    assert await counts.advance("a", 10, 2, 21) is NonceUse.FORGOTTEN
    assert await counts.advance("d", 13, 1, 21) is NonceUse.FRESH  # issued after the floor


async def test_entries_past_the_lifetime_are_dropped() -> None:
    counts = LocalNonceCounts(lifetime=10)
    await counts.advance("a", 0, 1, 0)
    await counts.advance("b", 5, 1, 5)
    await counts.advance("c", 20, 1, 20)
    assert len(counts) == 1
