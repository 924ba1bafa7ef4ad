"""The XEP-0198 counting core: the unacknowledged queue, 'h' arithmetic, bounds."""

from __future__ import annotations

import pytest

from chatgate.vocabulary.errors import StanzaErrorCondition
from chatgate.xmpp import sm_queue
from chatgate.xmpp.sm_queue import AckQueue, HandledCountTooHigh, QueueLimits, parse_h

WIDE = QueueLimits(stanzas=1000, bytes=1 << 20)


def test_acks_drop_what_was_handled_in_order() -> None:
    q = AckQueue(WIDE)
    for n in range(5):
        assert q.push(b"<message id='%d'/>" % n)
    assert q.sent == 5 and len(q) == 5
    assert q.ack(2) == 2
    assert q.unacked() == [b"<message id='2'/>", b"<message id='3'/>", b"<message id='4'/>"]
    assert q.ack(2) == 0  # the same 'h' again acknowledges nothing more
    assert q.ack(5) == 3 and len(q) == 0 and q.queued_bytes == 0


def test_an_h_past_what_was_sent_is_too_high() -> None:
    q = AckQueue(WIDE)
    q.push(b"<iq/>")
    with pytest.raises(HandledCountTooHigh) as exc:
        q.ack(2)
    assert (exc.value.h, exc.value.sent) == (2, 1)
    assert len(q) == 1  # nothing was dropped by the refused ack


def test_an_h_below_the_last_one_is_refused_too() -> None:
    q = AckQueue(WIDE)
    for _ in range(3):
        q.push(b"<iq/>")
    q.ack(3)
    with pytest.raises(HandledCountTooHigh):
        q.ack(1)


def test_counts_wrap_at_two_to_the_32() -> None:
    q = AckQueue(WIDE)
    q.sent = q.acked = (1 << 32) - 2
    q.inbound = (1 << 32) - 1
    q.handled()
    assert q.inbound == 0
    for _ in range(4):
        q.push(b"<iq/>")
    assert q.sent == 2
    assert q.ack(1) == 3  # (2**32 - 2) -> 1 across the wrap
    assert len(q) == 1


def test_push_reports_the_count_bound() -> None:
    q = AckQueue(QueueLimits(stanzas=2, bytes=1 << 20))
    assert q.push(b"<a/>") and q.push(b"<b/>")
    assert not q.push(b"<c/>")
    assert len(q) == 3  # kept: the driver reroutes it when it closes the session


def test_push_reports_the_byte_bound() -> None:
    q = AckQueue(QueueLimits(stanzas=100, bytes=10))
    assert q.push(b"12345")
    assert not q.push(b"1234567")


def test_drain_empties_the_queue() -> None:
    q = AckQueue(WIDE)
    q.push(b"<a/>")
    q.push(b"<b/>")
    assert q.drain() == [b"<a/>", b"<b/>"]
    assert len(q) == 0 and q.queued_bytes == 0


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("4294967295", 4294967295),
        ("4294967296", None),
        ("-1", None),
        ("1e3", None),
        (" 1", None),
        ("", None),
        (None, None),
        ("9" * 400, None),
    ],
)
def test_parse_h_accepts_unsigned_ints_only(text: str | None, value: int | None) -> None:
    assert parse_h(text) == value


def test_nonzas_are_what_xep_0198_shows() -> None:
    assert sm_queue.request() == b"<r xmlns='urn:xmpp:sm:3'/>"
    assert sm_queue.answer(7) == b"<a xmlns='urn:xmpp:sm:3' h='7'/>"
    assert sm_queue.enabled(None, 300) == "<enabled xmlns='urn:xmpp:sm:3'/>"
    assert sm_queue.enabled("t<k", 60) == (
        "<enabled xmlns='urn:xmpp:sm:3' id=\"t&lt;k\" resume='true' max='60'/>"
    )
    assert sm_queue.resumed("tok", 3) == "<resumed xmlns='urn:xmpp:sm:3' previd=\"tok\" h='3'/>"
    failed = sm_queue.failed(StanzaErrorCondition.ITEM_NOT_FOUND, 5)
    assert failed == (
        "<failed xmlns='urn:xmpp:sm:3' h='5'><item-not-found "
        "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
    )
