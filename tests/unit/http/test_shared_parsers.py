"""Shared framed parsers (http/shared_parsers.py): one parser for every web connection
judges each message exactly as a parser of the connection's own would, and a message
that fails does not make the next one (another connection's) fail."""

from __future__ import annotations

import pytest

from chatgate.http.shared_parsers import live_parsers, parse_message
from chatgate.vocabulary import ns
from chatgate.xml.element import Element
from chatgate.xml.framed import FramedParser
from chatgate.xml.parser import StreamParseError
from chatgate.xml.serialize import serialize

LIMIT = 4096
DEPTH = 8

GOOD = [
    b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>",
    b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>",
    b"<message to='a@b' xmlns:x='urn:x'><x:body>one</x:body></message>",
    # the prefix declared by the message before must not leak into this one
    b"<message to='a@b'><body>two</body></message>",
    b"  <iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>\n",
    b"<?xml version='1.0'?><presence/>",
]

BAD = [
    b"<message><body>open",  # incomplete
    b"<a/><b/>",  # two elements
    b"text<a/>",  # text around
    b"<!-- c --><a/>",  # restricted XML
    b"<x:a/>",  # unbound prefix
    b"<a>" * (DEPTH + 1) + b"</a>" * (DEPTH + 1),  # too deep
    b"<a>" + b"x" * LIMIT + b"</a>",  # too big
    b"<a b='\xff'/>",  # not UTF-8
]


def fresh(data: bytes) -> Element | tuple[object, str]:
    try:
        return FramedParser(ns.CLIENT, max_stanza_bytes=LIMIT, max_depth=DEPTH).parse(data)
    except StreamParseError as exc:
        return (exc.condition, exc.text)


def shared(data: bytes) -> Element | tuple[object, str]:
    try:
        return parse_message(data, ns.CLIENT, LIMIT, DEPTH)
    except StreamParseError as exc:
        return (exc.condition, exc.text)


def same(a: Element | tuple[object, str], b: Element | tuple[object, str]) -> bool:
    if isinstance(a, Element) and isinstance(b, Element):
        return (a.ns, serialize(a)) == (b.ns, serialize(b))
    return a == b


@pytest.mark.parametrize("data", GOOD + BAD)
def test_a_message_gets_the_verdict_of_a_parser_of_its_own(data: bytes) -> None:
    for before in GOOD[:3]:  # whatever other connections sent before
        parse_message(before, ns.CLIENT, LIMIT, DEPTH)
    assert same(shared(data), fresh(data))


def test_good_messages_parse_after_bad_ones() -> None:
    for bad in BAD:
        assert not isinstance(shared(bad), Element)
        for good in GOOD:
            got = shared(good)
            assert isinstance(got, Element), (bad, good, got)
            assert same(got, fresh(good))


def test_a_failed_parser_is_replaced() -> None:
    parse_message(GOOD[0], ns.CLIENT, LIMIT, DEPTH)
    count = live_parsers()
    with pytest.raises(StreamParseError):
        parse_message(BAD[0], ns.CLIENT, LIMIT, DEPTH)
    assert live_parsers() == count - 1
    parse_message(GOOD[1], ns.CLIENT, LIMIT, DEPTH)
    assert live_parsers() == count


def test_limits_are_those_of_the_call() -> None:
    big = b"<message><body>" + b"x" * 5000 + b"</body></message>"
    assert not isinstance(shared(big), Element)
    assert isinstance(parse_message(big, ns.CLIENT, 8 * LIMIT, DEPTH), Element)
    assert not isinstance(shared(big), Element)  # the small limit still holds
