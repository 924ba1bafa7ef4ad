"""The framing seam: the TCP framer writes exactly what the TCP stream always had,
and `qualify` makes any element the core or the serializer writes stand alone."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest

from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.serialize import serialize
from chatgate.xmpp.framing import StreamError, StreamHeader, qualify
from chatgate.xmpp.output import TcpStreamOutput, stream_header


def test_tcp_header_is_the_rfc_6120_stream_header() -> None:
    header = stream_header(StreamHeader("localhost", "abc", "alice@localhost", "en"))
    assert header == (
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' from=\"localhost\" "
        b"to=\"alice@localhost\" id=\"abc\" version='1.0' xml:lang='en'>"
    )


def test_tcp_output_coalesces_one_turn_and_ends_with_the_error() -> None:
    async def run() -> list[bytes]:
        writes: list[bytes] = []
        out = TcpStreamOutput(writes.append, asyncio.get_running_loop())
        out.header(StreamHeader("localhost", "id1"))
        out.features("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>")
        await asyncio.sleep(0)
        out.element(b"<message/>")
        out.end(StreamError(StreamErrorCondition.CONFLICT, "replaced"))
        return writes

    writes = asyncio.run(run())
    assert len(writes) == 2
    assert writes[0].endswith(
        b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
    )
    assert writes[1] == (
        b"<message/><stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>replaced</text>"
        b"</stream:error></stream:stream>"
    )


def _root_ns(data: bytes) -> str:
    tag = ET.fromstring(data).tag
    assert tag.startswith("{"), data
    return tag[1:].partition("}")[0]


@pytest.mark.parametrize(
    ("data", "expected_ns"),
    [
        (b"<message to='a@b' type='chat'><body>hi</body></message>", ns.CLIENT),
        (b"<presence/>", ns.CLIENT),
        (
            b"<iq type='result' id=\"1\"><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
            ns.CLIENT,
        ),
        (b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</success>", ns.SASL),
        (
            b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
            ns.STREAMS,
        ),
        (StreamError(StreamErrorCondition.HOST_UNKNOWN).element().encode(), ns.STREAMS),
    ],
)
def test_qualify_gives_every_element_its_namespace(data: bytes, expected_ns: str) -> None:
    assert _root_ns(qualify(data)) == expected_ns


def test_qualify_keeps_serialized_elements_of_other_namespaces() -> None:
    el = Element("query", "jabber:iq:roster", {"ver": "1"})
    data = serialize(el).encode()
    assert qualify(data) is data
    stanza = Element("iq", ns.CLIENT, {"type": "get", "id": "x"}, [el])
    assert _root_ns(qualify(serialize(stanza).encode())) == ns.CLIENT
