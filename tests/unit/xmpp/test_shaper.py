"""Token buckets (`xmpp/shaper.py`): time is passed in, so nothing here sleeps."""

from __future__ import annotations

import pytest

from chatgate.xmpp.admission import LocalConnectionGauge
from chatgate.xmpp.shaper import TokenBucket


def test_a_full_bucket_lets_a_burst_through_without_waiting() -> None:
    bucket = TokenBucket(rate=100, burst=1000, now=0.0)
    assert bucket.take(1000, now=0.0) == 0.0


def test_past_the_burst_the_wait_is_the_debt_over_the_rate() -> None:
    bucket = TokenBucket(rate=100, burst=1000, now=0.0)
    assert bucket.take(1500, now=0.0) == pytest.approx(5.0)  # 500 owed at 100/s


def test_the_bucket_refills_at_its_rate_and_never_past_the_burst() -> None:
    bucket = TokenBucket(rate=100, burst=1000, now=0.0)
    bucket.take(1000, now=0.0)
    assert bucket.take(100, now=1.0) == 0.0  # one second earned 100
    assert bucket.take(1000, now=100.0) == 0.0  # a long pause earns only the burst
    assert bucket.take(1, now=100.0) == pytest.approx(0.01)


def test_a_client_that_keeps_sending_is_held_to_the_rate() -> None:
    bucket = TokenBucket(rate=1000, burst=1000, now=0.0)
    now, total = 0.0, 0
    while now < 10.0:
        wait = bucket.take(500, now)
        total += 500
        now += wait if wait else 0.001
    # 10 s at 1000/s plus the starting burst (and one read of slack).
    assert total <= 1000 * 10 + 1000 + 500


def test_rate_and_burst_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=10, now=0.0)


def test_the_gauge_counts_per_address_and_forgets_empty_ones() -> None:
    gauge = LocalConnectionGauge()
    assert gauge.enter("192.0.2.1") == 1
    assert gauge.enter("192.0.2.1") == 2
    assert gauge.enter("192.0.2.2") == 1
    gauge.leave("192.0.2.1")
    gauge.leave("192.0.2.1")
    assert gauge.count("192.0.2.1") == 0
    assert "192.0.2.1" not in gauge._counts
    gauge.leave("192.0.2.9")  # never entered: no negative counts
    assert gauge.count("192.0.2.9") == 0
