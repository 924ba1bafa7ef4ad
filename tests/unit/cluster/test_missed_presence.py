"""What a node keeps of the presence it could not send during a Redis outage:
the latest per sender and recipient, nothing stale, and bounded in bytes."""

from __future__ import annotations

import logging

import pytest

from chatgate.cluster.missed_presence import MissedPresence, sender_of

IVAN = "ivan@localhost/r"


def presence(sender: str, status: str = "", kind: str = "") -> bytes:
    attrs = f'from="{sender}"' + (f' type="{kind}"' if kind else "")
    if not status:
        return f"<presence {attrs}/>".encode()
    return f"<presence {attrs}><status>{status}</status></presence>".encode()


def test_the_sender_is_read_from_the_start_tag() -> None:
    assert sender_of(presence("kate@localhost/r", "x")) == "kate@localhost/r"
    assert sender_of(b'<presence from="a@b/c" type="unavailable"/>') == "a@b/c"
    assert sender_of(b"<presence") is None
    # only availability: a subscription state change is not kept
    assert sender_of(presence("kate@localhost", kind="subscribed")) is None
    assert sender_of(presence("kate@localhost", kind="probe")) is None
    assert sender_of(b"<presence from='unclosed>") is None


def test_the_latest_of_each_sender_is_kept_oldest_first() -> None:
    missed = MissedPresence()
    missed.keep(IVAN, presence("kate@localhost/r", "one"))
    missed.keep(IVAN, presence("leo@localhost/r", "leo"))
    missed.keep(IVAN, presence("kate@localhost/r", "two"))
    assert missed.take(IVAN) == [
        presence("leo@localhost/r", "leo"),
        presence("kate@localhost/r", "two"),
    ]
    assert missed.take(IVAN) == [] and not missed.pending


def test_a_presence_that_got_through_makes_the_kept_one_stale() -> None:
    missed = MissedPresence()
    missed.keep(IVAN, presence("kate@localhost/r", "during"))
    missed.keep(IVAN, presence("leo@localhost/r", "", "unavailable"))
    missed.passed(IVAN, presence("kate@localhost/r", "after"))
    assert missed.take(IVAN) == [presence("leo@localhost/r", "", "unavailable")]
    missed.keep(IVAN, presence("kate@localhost/r", "during"))
    missed.passed(IVAN, presence("kate@localhost/r", "after"))
    assert not missed.pending  # nothing left for ivan: the entry is gone too


def test_past_the_bound_nothing_more_is_kept_and_it_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    one = presence("kate@localhost/r", "x" * 100)
    missed = MissedPresence(max_bytes=3 * len(one))
    with caplog.at_level(logging.WARNING):
        for n in range(10):
            missed.keep(f"user{n}@localhost/r", one)
    assert len(missed.pending) == 3
    assert sum("not sent when Redis returns" in r.message for r in caplog.records) == 1
    # A replacement of the same size fits where the earlier one was.
    missed.keep("user0@localhost/r", presence("kate@localhost/r", "y" * 100))
    assert b"yyy" in missed.take("user0@localhost/r")[0]
    assert missed.forget() == 2 and not missed.pending
    missed.keep("user9@localhost/r", one)  # room again after forgetting
    assert list(missed.pending) == ["user9@localhost/r"]
