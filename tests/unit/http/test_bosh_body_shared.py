"""BOSH bodies through the shared parser (bosh_body._parse_shared) get exactly the verdict
of a fresh stream parser (bosh_body._parse_alone): the same attributes and stanzas, or
the same refusal with the same text."""

from __future__ import annotations

import random

import pytest

from chatgate.http import bosh_body
from chatgate.http.bosh_body import BadBody, RequestBody
from chatgate.xml.serialize import serialize

LIMIT = 4096
DEPTH = 6
B = b"<body rid='7' sid='s' xmlns='http://jabber.org/protocol/httpbind'"


def nest(n: int) -> bytes:
    return b"<message>" + b"<a>" * (n - 1) + b"</a>" * (n - 1) + b"</message>"


def many_attrs(n: int) -> bytes:
    return b"<message " + b" ".join(b"a%d=''" % i for i in range(n)) + b"/>"


BODIES = [
    B + b"/>",
    B + b"></body>",
    B + b"><message to='a@b'><body>hi</body></message></body>",
    B + b"> <message/>\n<presence/>\t</body>\r\n",
    B
    + b"><iq xmlns='jabber:client' type='get' id='1'><query xmlns='jabber:iq:roster'/></iq></body>",
    B + b" xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true' xml:lang='en' to='example.com'/>",
    B + b" type='terminate'><presence type='unavailable'/></body>",
    B + b"><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEA</auth></body>",
    B + b" xmlns:p='urn:p'><p:x/></body>",
    # depth: at the limit and one over
    B + b">" + nest(DEPTH) + b"</body>",
    B + b">" + nest(DEPTH + 1) + b"</body>",
    # node budget (max(64, LIMIT // 16) = 256 per stanza): at it and over it
    B + b">" + many_attrs(254) + b"</body>",
    B + b">" + many_attrs(300) + b"</body>",
    B + b">" + many_attrs(200) + many_attrs(200) + b"</body>",
    # size: a stanza over the limit, a body over it with small stanzas
    B + b"><message>" + b"x" * LIMIT + b"</message></body>",
    B + b">" + b"<message/>" * (LIMIT // 10) + b"</body>",
    # what only a stream allows, or refuses
    B + b">text<message/></body>",
    B + b"><message/>text</body>",
    B + b"><!-- c --></body>",
    B + b"><?pi x?></body>",
    b"<?xml version='1.0'?>" + B + b"/>",
    b"<?xml version='1.0' encoding='ISO-8859-1'?>" + B + b"/>",
    b"\xef\xbb\xbf" + B + b"/>",
    b" " + B + b"/>",
    b"<!DOCTYPE body>" + B + b"/>",
    B + b"/> junk",
    B + b"/><body/>",
    B + b"><message>",
    B + b">",
    B,
    b"",
    b"<body rid='1'/>",
    b"<body rid='1' xmlns='urn:other'/>",
    b"<bodyx rid='1' xmlns='http://jabber.org/protocol/httpbind'/>",
    b"<body xmlns='http://jabber.org/protocol/httpbind'/>",
    b"<body rid='x1' xmlns='http://jabber.org/protocol/httpbind'/>",
    b"<body rid='12345678901234567' xmlns='http://jabber.org/protocol/httpbind'/>",
    B + b" " + b" ".join(b"xmlns:p%d='urn:%d'" % (i, i) for i in range(17)) + b"/>",
    B + b" " + b" ".join(b"xmlns:p%d='urn:%d'" % (i, i) for i in range(14)) + b"/>",
    B + b" xmlns:" + b"p" * 300 + b"='urn:x'/>",
    B + b" xmlns:q='" + b"u" * 1100 + b"'/>",
    B + b" a='\xff'/>",
    B + b"><message><body>\xc3</body></message></body>",
    B + b"><x:message/></body>",
    B + b" " + b"a" * 300 + b"='1'/>",
    B + b"><message " + b"a" * 300 + b"='1'/></body>",
    B + b" xml:lang='en'><message xml:lang='de'/></body>",
]


def verdict(body: RequestBody | BadBody) -> object:
    if isinstance(body, BadBody):
        error = body.error
        return ("bad", str(body), error.condition if error else None)
    return (body.attrs, [(s.ns, serialize(s)) for s in body.stanzas])


def judge(fn: object, data: bytes) -> object:
    try:
        return verdict(fn(data, LIMIT, DEPTH))  # type: ignore[operator]
    except BadBody as exc:
        return verdict(exc)


def via_parse(data: bytes, limit: int, depth: int) -> RequestBody:
    return bosh_body.parse(data, max_stanza_bytes=limit, max_depth=depth)


@pytest.mark.parametrize("data", BODIES)
def test_the_shared_parser_agrees_with_a_fresh_one(data: bytes) -> None:
    assert judge(via_parse, data) == judge(bosh_body._parse_alone, data)


def test_ordinary_bodies_take_the_shared_path() -> None:
    """The equivalence above is only worth something if the shared path is used."""
    for data in BODIES[:10]:
        assert bosh_body._parse_shared(data, LIMIT, DEPTH) is not None, data


def test_mutated_bodies_get_the_same_verdict() -> None:
    rng = random.Random(11)
    pieces = [b"<", b">", b"/", b"'", b"=", b" ", b"x", b"&", b"\xff", b"<!--", b"xmlns="]
    for _ in range(3000):
        data = bytearray(rng.choice(BODIES[:12]))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(data) + 1)
            op = rng.random()
            if op < 0.4:
                data[at:at] = rng.choice(pieces)
            elif op < 0.8 and at < len(data):
                del data[at : at + rng.randint(1, 4)]
            else:
                del data[at:]
        raw = bytes(data)
        assert judge(via_parse, raw) == judge(bosh_body._parse_alone, raw), raw
