"""The pure parts of BOSH bodies: parsing and terminal conditions (XEP-0124 §17.2,
XEP-0206 §7)."""

from __future__ import annotations

import pytest

from chatgate.http import bosh_body
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StreamErrorCondition as C

HEAD = "<body xmlns='http://jabber.org/protocol/httpbind' rid='7' sid='abc'>"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (C.HOST_UNKNOWN, ("host-unknown", False)),
        (C.SYSTEM_SHUTDOWN, ("system-shutdown", False)),
        (C.POLICY_VIOLATION, ("policy-violation", False)),
        (C.NOT_AUTHORIZED, ("remote-stream-error", True)),
        (C.CONFLICT, ("remote-stream-error", True)),
        (C.CONNECTION_TIMEOUT, ("remote-stream-error", True)),
    ],
)
def test_stream_errors_map_to_terminal_conditions(condition: C, expected: tuple[str, bool]) -> None:
    assert bosh_body.condition_for(condition) == expected


def test_unqualified_children_become_jabber_client_with_their_descendants() -> None:
    body = bosh_body.parse(
        (
            HEAD + "<message to='a@b'><body>hi</body><x xmlns='urn:x'><y/></x></message></body>"
        ).encode(),
        max_stanza_bytes=4096,
        max_depth=16,
    )
    (message,) = body.stanzas
    assert message.ns == ns.CLIENT
    assert [c.ns for c in message.children if not isinstance(c, str)] == [ns.CLIENT, "urn:x"]
    assert (body.sid, body.rid) == ("abc", 7)


def test_peek_sid_reads_the_root_only() -> None:
    data = b"<body xmlns='http://jabber.org/protocol/httpbind' rid='1' sid=\"s1\"><message sid='s2'/></body>"
    assert bosh_body.peek_sid(data) == "s1"
    assert bosh_body.peek_sid(b"<body rid='1'><x sid='s2'/></body>") is None


def test_restart_body_takes_missing_header_attributes_from_creation() -> None:
    creation = bosh_body.parse(
        b"<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'"
        b" rid='1' to='localhost' xmpp:version='1.0'/>",
        max_stanza_bytes=4096,
        max_depth=16,
    )
    restart = bosh_body.parse(
        b"<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'"
        b" rid='3' sid='x' xmpp:restart='true'/>",
        max_stanza_bytes=4096,
        max_depth=16,
    )
    assert restart.restart
    opened = restart.stream_opened(creation)
    assert opened.attrs == {"to": "localhost", "version": "1.0"}
    assert (opened.name, opened.ns, opened.default_ns) == ("stream", ns.STREAMS, ns.CLIENT)


def test_terminate_declares_the_stream_prefix_for_a_stream_error() -> None:
    data = bosh_body.terminate("remote-stream-error", b"<stream:error><conflict/></stream:error>")
    assert b"xmlns:stream='http://etherx.jabber.org/streams'" in data
    assert b"type='terminate'" in data and b"condition='remote-stream-error'" in data


@pytest.mark.parametrize("rid", ["²", "٣", "\uff11\uff12", "1²"])
def test_rid_of_non_ascii_digits_is_bad_request(rid: str) -> None:
    data = f"<body xmlns='http://jabber.org/protocol/httpbind' rid='{rid}'/>".encode()
    with pytest.raises(bosh_body.BadBody):
        bosh_body.parse(data, max_stanza_bytes=4096, max_depth=16)
    with pytest.raises(bosh_body.BadBody):  # the fresh parser's verdict, too
        bosh_body.parse(b" " + data, max_stanza_bytes=4096, max_depth=16)


@pytest.mark.parametrize("value", ["²", "٣", "-1", "", "1 "])
def test_int_attr_takes_ascii_digits_only(value: str) -> None:
    body = bosh_body.RequestBody({"rid": "1", "wait": value}, [])
    with pytest.raises(bosh_body.BadBody):
        body.int_attr("wait")
    assert bosh_body.RequestBody({"wait": "0042"}, []).int_attr("wait") == 42


def test_too_many_stanzas_stop_the_parser_early() -> None:
    data = HEAD.encode() + b"<a/>" * 250_000 + b"</body>"
    parser = bosh_body.BodyParser(data, max_stanza_bytes=262144, max_depth=16, max_children=1000)
    with pytest.raises(bosh_body.BadBody) as refused:
        parser.step(len(data))
    assert refused.value.error is not None
    assert refused.value.error.condition is C.POLICY_VIOLATION
    assert parser._pos <= 1000 * 4 + 2 * 8192  # stopped within a feed of the limit


def test_a_large_body_is_parsed_in_steps_with_the_same_result() -> None:
    stanzas = b"<message to='a@b'><body>hi</body></message>" * 900
    data = HEAD.encode() + stanzas + b"</body>"
    parser = bosh_body.BodyParser(data, max_stanza_bytes=4096, max_depth=16, max_children=1000)
    steps = 1
    body = parser.step(8192)
    while body is None:
        steps += 1
        body = parser.step(8192)
    assert steps == -(-len(data) // 8192)
    assert len(body.stanzas) == 900
    at_once = bosh_body.parse(data, max_stanza_bytes=4096, max_depth=16)
    assert [s.attrs for s in body.stanzas] == [s.attrs for s in at_once.stanzas]


def test_the_stanza_limit_holds_on_the_shared_parsers_path_too() -> None:
    # few enough '<' for the shared parser: at the limit; one more: refused
    ok = HEAD.encode() + b"<a/>" * 30 + b"</body>"
    assert (
        len(bosh_body.parse(ok, max_stanza_bytes=4096, max_depth=16, max_children=30).stanzas) == 30
    )
    over = HEAD.encode() + b"<a/>" * 31 + b"</body>"
    with pytest.raises(bosh_body.BadBody):
        bosh_body.parse(over, max_stanza_bytes=4096, max_depth=16, max_children=30)
