"""Transcript helper for the XML layer: feed the same bytes three ways, demand one outcome.

A parser that only works when a whole stanza arrives in one read is broken on a real
network, so every parser test goes through `transcript`: the bytes are fed whole, one
byte at a time, and split at random points (fixed seeds), and the events plus the
final error (condition and text) must be identical each time (h11's `tr()` idea).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.parser import (
    Stanza,
    StreamClosed,
    StreamEvent,
    StreamOpened,
    StreamParseError,
    XmlStreamParser,
)

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' "
    b"xml:lang='en'>"
)


def tree(el: Element) -> tuple[object, ...]:
    """A comparable picture of an element (Element has identity equality)."""
    return (
        el.ns,
        el.name,
        dict(el.attrs),
        [c if isinstance(c, str) else tree(c) for c in el.children],
    )


def canon(event: StreamEvent) -> tuple[object, ...]:
    if isinstance(event, StreamOpened):
        return ("open", event.name, event.ns, event.attrs, event.default_ns, event.prefixes)
    if isinstance(event, Stanza):
        return ("stanza", tree(event.element))
    assert isinstance(event, StreamClosed)
    return ("close",)


@dataclass
class Outcome:
    events: list[tuple[object, ...]]
    error: tuple[StreamErrorCondition, str] | None
    stanzas: list[Element]  # from the whole-buffer run, for tests that inspect trees

    @property
    def condition(self) -> StreamErrorCondition | None:
        return self.error[0] if self.error else None


def _run(pieces: list[bytes], limits: dict[str, int]) -> Outcome:
    parser = XmlStreamParser(**limits)
    events: list[StreamEvent] = []
    error = None
    for piece in pieces:
        try:
            events += parser.feed(piece)
        except StreamParseError as exc:
            events += exc.events
            error = (exc.condition, exc.text)
            # A failed parser stays failed, with the same condition and no new events.
            with pytest.raises(StreamParseError) as again:
                parser.feed(b"<presence/>")
            assert (again.value.condition, again.value.text, again.value.events) == (
                exc.condition,
                exc.text,
                [],
            )
            break
    stanzas = [e.element for e in events if isinstance(e, Stanza)]
    return Outcome([canon(e) for e in events], error, stanzas)


def _random_split(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(data):
        n = rng.randint(1, 40)
        pieces.append(data[i : i + n])
        i += n
    return pieces


def feed_three_ways(data: bytes, **limits: int) -> Outcome:
    """Feed `data` whole, byte by byte and randomly split; assert one outcome; return it."""
    whole = _run([data], limits)
    bytewise = _run([data[i : i + 1] for i in range(len(data))], limits)
    assert bytewise.events == whole.events, "byte-at-a-time feeding changed the events"
    assert bytewise.error == whole.error, "byte-at-a-time feeding changed the error"
    for seed in (1, 2, 3):
        split = _run(_random_split(data, seed), limits)
        assert split.events == whole.events, f"random split (seed {seed}) changed the events"
        assert split.error == whole.error, f"random split (seed {seed}) changed the error"
    return whole


@pytest.fixture(scope="session")
def transcript():  # type: ignore[no-untyped-def]
    return feed_three_ways
