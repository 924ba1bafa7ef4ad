"""Parser hibernation: an idle stream frees its expat parser between stanzas and wakes
up on the next bytes with the same events, however the input is split."""

from __future__ import annotations

import random

import pytest

from chatgate.vocabulary.errors import PeerProtocolError, StreamErrorCondition
from chatgate.xml.parser import Stanza, StreamClosed, StreamOpened, XmlStreamParser
from chatgate.xml.serialize import serialize

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)
STANZAS = [
    b"<message to='a@localhost' type='chat'><body>one &amp; two</body></message>",
    b"\n  ",
    b"<presence><show>away</show><x xmlns='urn:example:x' a='&gt;'/></presence>",
    b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq> ",
    b"<stream:features/>",
    b"<message><body>caf\xc3\xa9 \xe2\x82\xac</body></message>",
]


def describe(events: list[object]) -> list[str]:
    out = []
    for event in events:
        if isinstance(event, Stanza):
            out.append(serialize(event.element, parent_ns=""))
        else:
            out.append(type(event).__name__)
    return out


def run(chunks: list[bytes], hibernate_after_each: bool) -> tuple[list[str], int]:
    parser = XmlStreamParser()
    events: list[object] = []
    slept = 0
    for chunk in chunks:
        events.extend(parser.feed(chunk))
        if hibernate_after_each and parser.hibernate():
            slept += 1
    return describe(events), slept


def chunked(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 40)
        out.append(data[i : i + n])
        i += n
    return out


@pytest.mark.parametrize("seed", range(30))
def test_hibernating_after_any_chunk_gives_the_same_events(seed: int) -> None:
    data = HEADER + b"".join(STANZAS) + b"</stream:stream>"
    chunks = chunked(data, seed)
    assert run(chunks, True)[0] == run(chunks, False)[0]


def test_an_idle_stream_between_stanzas_frees_its_parser_and_wakes_up() -> None:
    parser = XmlStreamParser()
    assert isinstance(parser.feed(HEADER)[0], StreamOpened)
    assert parser.hibernate() and parser.hibernating
    assert parser.feed(b"   \n") == []  # keepalives do not wake it
    assert parser.hibernating
    (event,) = parser.feed(STANZAS[0])
    assert isinstance(event, Stanza) and event.element.find("body").text == "one & two"
    assert event.element.ns == "jabber:client"
    assert parser.hibernate()
    (event,) = parser.feed(b"<stream:features/>")
    assert event.element.ns == "http://etherx.jabber.org/streams"
    assert parser.hibernate()
    assert isinstance(parser.feed(b"</stream:stream>")[0], StreamClosed)


def test_no_hibernation_inside_a_stanza_or_an_unfinished_tag() -> None:
    parser = XmlStreamParser()
    parser.feed(HEADER)
    parser.feed(b"<message><body>half")
    assert not parser.hibernate()
    parser.feed(b"</body></message><presence a='>")  # '>' inside an attribute value
    assert not parser.hibernate()
    (event,) = parser.feed(b"'/>")
    assert event.element.get("a") == ">"
    assert parser.hibernate()


def test_restrictions_still_apply_after_waking_up() -> None:
    parser = XmlStreamParser()
    parser.feed(HEADER)
    assert parser.hibernate()
    with pytest.raises(PeerProtocolError) as error:
        parser.feed(b"<!-- sneaky -->")
    assert error.value.condition is StreamErrorCondition.RESTRICTED_XML


def test_stanza_limit_still_applies_after_waking_up() -> None:
    parser = XmlStreamParser(max_stanza_bytes=2048)
    parser.feed(HEADER)
    assert parser.hibernate()
    with pytest.raises(PeerProtocolError) as error:
        parser.feed(b"<message><body>" + b"x" * 5000 + b"</body></message>")
    assert error.value.condition is StreamErrorCondition.POLICY_VIOLATION


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_hibernation_saves_most_of_the_parsers_memory() -> None:
    """Measured in RSS: expat allocates in C, where tracemalloc cannot see."""

    def batch(hibernate: bool) -> int:
        before = _rss_kib()
        for _ in range(3000):
            p = XmlStreamParser()
            p.feed(HEADER + STANZAS[0])
            if hibernate:
                assert p.hibernate()
            kept.append(p)
        return _rss_kib() - before

    kept: list[XmlStreamParser] = []
    asleep = batch(True)
    awake = batch(False)
    assert asleep < awake * 0.6, (asleep, awake)


def test_junk_after_the_stream_end_is_refused_however_split() -> None:
    for chunks in ([b"</stream:stream>x:"], [b"</stream:stream>", b"x", b":"]):
        parser = XmlStreamParser()
        parser.feed(HEADER)
        with pytest.raises(PeerProtocolError) as error:
            for chunk in chunks:
                parser.feed(chunk)
        assert error.value.condition is StreamErrorCondition.NOT_WELL_FORMED


def test_dropped_parsers_leave_no_cyclic_garbage() -> None:
    """Hibernated, restarted and closed parsers are freed by reference counting: an idle
    server, whose cyclic collector rarely runs, must really get the memory back."""
    import gc

    gc.collect()
    gc.disable()
    try:
        for _ in range(100):
            p = XmlStreamParser()
            p.feed(HEADER + STANZAS[0])
            assert p.hibernate()
            p.feed(STANZAS[0])  # wakes up: a new expat parser
            p.reset()  # a stream restart drops it again
            p.feed(HEADER)
            p.close()
            del p
        unreachable = gc.collect()
    finally:
        gc.enable()
    assert unreachable < 50, unreachable
