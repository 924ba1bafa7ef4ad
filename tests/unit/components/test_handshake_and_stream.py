"""The XEP-0114 handshake and the component stream core, driven with parsed events."""

from __future__ import annotations

import hashlib

import pytest

from chatgate.components import stream as cs
from chatgate.components.handshake import handshake_digest, handshake_matches
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.parser import Stanza, StreamClosed, XmlStreamParser

SECRETS = {"gw.example.org": "s3cret-of-the-gateway"}
HEADER = (
    b"<stream:stream xmlns='jabber:component:accept'"
    b" xmlns:stream='http://etherx.jabber.org/streams' to='gw.example.org'>"
)


def test_the_digest_is_the_hex_sha1_of_stream_id_and_secret() -> None:
    # XEP-0114 §3, computed independently here.
    expected = hashlib.sha1(b"3BF96D32" + b"s3cret").hexdigest()
    assert handshake_digest("3BF96D32", "s3cret") == expected
    assert handshake_matches("3BF96D32", "s3cret", expected)
    assert handshake_matches("3BF96D32", "s3cret", f"  {expected.upper()}\n")
    assert not handshake_matches("3BF96D32", "s3cret", expected[:-1])
    assert not handshake_matches("3BF96D32", "other", expected)
    assert not handshake_matches("other-id", "s3cret", expected)
    assert not handshake_matches("3BF96D32", "s3cret", "")
    assert not handshake_matches("3BF96D32", "s3cret", "\u00e9" * 40)


def condition_of(stanza: Element) -> str:
    error = stanza.find("error", ns.CLIENT)
    assert error is not None
    first = error.children[0]
    assert isinstance(first, Element)
    return first.name


def opened(stream_id: str = "abc") -> tuple[cs.ComponentStream, XmlStreamParser]:
    core = cs.ComponentStream(SECRETS, stream_id)
    parser = XmlStreamParser()
    [header] = parser.feed(HEADER)
    assert core.receive(header) == [cs.OpenStream("gw.example.org")]
    return core, parser


def feed(core: cs.ComponentStream, parser: XmlStreamParser, data: bytes) -> list[cs.Action]:
    actions: list[cs.Action] = []
    for event in parser.feed(data):
        actions += core.receive(event)
    return actions


def established() -> tuple[cs.ComponentStream, XmlStreamParser]:
    core, parser = opened()
    digest = handshake_digest("abc", SECRETS["gw.example.org"]).encode()
    assert feed(core, parser, b"<handshake>" + digest + b"</handshake>") == [
        cs.Authenticate("gw.example.org")
    ]
    assert core.state is cs.State.VERIFYING
    core.established()
    assert core.state is cs.State.ESTABLISHED
    return core, parser


def test_a_wrong_handshake_is_refused_and_ends_the_stream() -> None:
    core, parser = opened()
    assert feed(core, parser, b"<handshake>00</handshake>") == [cs.Refuse("gw.example.org")]
    assert core.state is cs.State.CLOSED
    assert feed(core, parser, b"<message to='a@b'/>") == []


@pytest.mark.parametrize(
    ("header", "condition"),
    [
        (HEADER.replace(b"gw.example.org", b"nobody.example.org"), "host-unknown"),
        (HEADER.replace(b" to='gw.example.org'", b""), "host-unknown"),
        (HEADER.replace(b"jabber:component:accept", b"jabber:client"), "invalid-namespace"),
        (HEADER.replace(b"jabber:component:accept", b"jabber:server"), "invalid-namespace"),
    ],
)
def test_a_bad_header_is_a_stream_error(header: bytes, condition: str) -> None:
    core = cs.ComponentStream(SECRETS, "abc")
    [event] = XmlStreamParser().feed(header)
    [action] = core.receive(event)
    assert isinstance(action, cs.Close)
    assert action.condition is StreamErrorCondition(condition)


def test_anything_before_the_handshake_is_not_authorized() -> None:
    core, parser = opened()
    [action] = feed(core, parser, b"<message to='alice@example.org'><body>hi</body></message>")
    assert action == cs.Close(StreamErrorCondition.NOT_AUTHORIZED, "the handshake comes first")


def test_a_stanza_is_moved_into_jabber_client_and_routed() -> None:
    core, parser = established()
    [action] = feed(
        core,
        parser,
        b"<message from='bot@gw.example.org' to='alice@example.org/x'>"
        b"<body>hi</body><x xmlns='urn:other'><y/></x></message>",
    )
    assert isinstance(action, cs.Route)
    el = action.stanza
    assert el.ns == ns.CLIENT
    assert el.find("body", ns.CLIENT) is not None
    x = el.find("x", "urn:other")
    assert x is not None and x.children and isinstance(x.children[0], Element)
    assert x.children[0].ns == "urn:other"
    assert str(action.to) == "alice@example.org/x"


def test_a_missing_from_becomes_the_domain() -> None:
    core, parser = established()
    [action] = feed(core, parser, b"<presence to='alice@example.org'/>")
    assert isinstance(action, cs.Route)
    assert action.stanza.attrs["from"] == "gw.example.org"


@pytest.mark.parametrize(
    "sender", ["bot@evil.example.org", "example.org", "bot@sub.gw.example.org", "@@bad"]
)
def test_a_from_outside_the_domain_is_invalid_from(sender: str) -> None:
    core, parser = established()
    data = f"<message from='{sender}' to='alice@example.org'/>".encode()
    [action] = feed(core, parser, data)
    assert isinstance(action, cs.Close)
    assert action.condition is StreamErrorCondition.INVALID_FROM
    assert core.state is cs.State.CLOSED


def test_a_missing_or_malformed_to_is_answered_except_on_errors_and_results() -> None:
    core, parser = established()
    [reply] = feed(
        core,
        parser,
        b"<iq type='get' id='1' from='gw.example.org'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    assert isinstance(reply, cs.Reply)
    assert reply.stanza.attrs["type"] == "error"
    assert reply.stanza.attrs["to"] == "gw.example.org"
    assert condition_of(reply.stanza) == "bad-request"
    [reply] = feed(core, parser, b"<message to='a@@b' from='gw.example.org'/>")
    assert isinstance(reply, cs.Reply)
    assert condition_of(reply.stanza) == "jid-malformed"
    assert feed(core, parser, b"<iq type='result' id='2'/>") == []
    assert feed(core, parser, b"<message type='error' to='a@@b'/>") == []


def test_a_non_stanza_element_is_unsupported_stanza_type() -> None:
    core, parser = established()
    [action] = feed(core, parser, b"<handshake>again</handshake>")
    assert isinstance(action, cs.Close)
    assert action.condition is StreamErrorCondition.UNSUPPORTED_STANZA_TYPE
    core, parser = established()
    [action] = feed(core, parser, b"<message xmlns='jabber:client' to='a@b'/>")
    assert isinstance(action, cs.Close)
    assert action.condition is StreamErrorCondition.UNSUPPORTED_STANZA_TYPE


def test_the_peer_closing_its_stream_closes_ours() -> None:
    core, _parser = established()
    assert core.receive(StreamClosed()) == [cs.Close(None)]
    assert core.state is cs.State.CLOSED


def test_input_while_the_handshake_is_being_decided_is_refused() -> None:
    core, parser = opened()
    digest = handshake_digest("abc", SECRETS["gw.example.org"]).encode()
    feed(core, parser, b"<handshake>" + digest + b"</handshake>")
    [action] = core.receive(Stanza(Element("message", cs.COMPONENT)))
    assert isinstance(action, cs.Close)
    assert action.condition is StreamErrorCondition.NOT_AUTHORIZED
