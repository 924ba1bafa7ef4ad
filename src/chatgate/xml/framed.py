"""Self-contained XML: RFC 7395 WebSocket messages and stored stanzas, one element each.

Owns: parsing a message that must hold exactly one complete element
(`FramedParser`, one per WebSocket connection) and one stored element
(`parse_fragment`: offline messages, vCards), with the restrictions, limits and
RFC 6120 §4.9.3 conditions of the stream parser, plus the rules of a message.
Must not: do I/O, await, read the clock, log per message, or know what a
stanza means.

Theory of operation: a `FramedParser` wraps one long-lived `XmlStreamParser`
fed a synthetic stream header declaring the content namespace; each message is
fed as that stream's next child, so a message costs about what a stanza on TCP
costs and every check of the stream parser applies unchanged.  What a message
adds (one element, nothing but whitespace around it, an optional XML
declaration, a size limit per message) is judged here, through the stream
parser's small API for layers on top (`failure`, `fail`, `stray_text`,
`ends_outside_elements`), never its private state.
"""

from __future__ import annotations

from chatgate.vocabulary.errors import StreamErrorCondition as Cond
from chatgate.xml.element import Element
from chatgate.xml.parser import Stanza, StreamParseError, XmlStreamParser
from chatgate.xml.serialize import escape_attr

__all__ = ["FramedParser", "parse_fragment"]


class FramedParser:
    """RFC 7395 (XMPP over WebSocket): each message is one complete top-level element.

    RFC 7395 §3.3 frames the stream by WebSocket messages: every message carries exactly
    one whole, well-formed element; <open/> and <close/> in
    urn:ietf:params:xml:ns:xmpp-framing replace the stream header and footer, and
    stanzas are in the content namespace (`default_ns`) unless they say otherwise.  One
    long-lived expat parser serves the connection: messages are fed as the children of a
    synthetic stream element declaring `default_ns`, so a message costs about what a
    stanza on TCP costs.  Same restrictions and limits as `XmlStreamParser`; an optional
    XML declaration may lead a message.

    `parse()` raises `StreamParseError`: POLICY_VIOLATION for a message over
    `max_stanza_bytes`; NOT_WELL_FORMED unless the message holds exactly one complete
    element (whitespace around it is fine); BAD_FORMAT for other text around it; and
    every condition `XmlStreamParser.feed` raises.  After an error every call raises.
    """

    __slots__ = ("_stream",)

    def __init__(
        self,
        default_ns: str = "jabber:client",
        *,
        max_stanza_bytes: int = 262144,
        max_depth: int = 64,
        max_nodes: int | None = None,
    ) -> None:
        self._stream = XmlStreamParser(
            max_stanza_bytes=max_stanza_bytes, max_depth=max_depth, max_nodes=max_nodes
        )
        self._stream.feed(f'<fragment xmlns="{escape_attr(default_ns)}">'.encode())

    def parse(self, data: bytes) -> Element:
        """The element one WebSocket message carries."""
        stream = self._stream
        failure = stream.failure
        if failure is not None:
            raise StreamParseError(*failure)
        limit = stream.max_stanza_bytes
        if len(data) > limit:
            raise stream.fail(Cond.POLICY_VIOLATION, f"message over {limit} bytes")
        if data.startswith(b"<?xml"):
            data = _strip_declaration(stream, data)
        try:
            events = stream.feed(data)
        except StreamParseError as exc:
            if exc.condition is Cond.NOT_WELL_FORMED and b"<!DOCTYPE" in data:
                # Inside the stream element a DOCTYPE is a syntax error; it is still a
                # DTD, which RFC 6120 §11.1 restricts.
                raise stream.fail(Cond.RESTRICTED_XML, "DTDs are not allowed") from None
            raise
        if stream.stray_text:
            raise stream.fail(Cond.BAD_FORMAT, "text is not allowed around the element")
        if (
            len(events) != 1
            or type(events[0]) is not Stanza
            or not stream.ends_outside_elements(data)
        ):
            raise stream.fail(Cond.NOT_WELL_FORMED, "a message must hold one complete element")
        return events[0].element


def _strip_declaration(stream: XmlStreamParser, data: bytes) -> bytes:
    """Check a message's leading XML declaration on its own, then drop it."""
    end = data.find(b"?>") + 2
    if end < 2:
        raise stream.fail(Cond.NOT_WELL_FORMED, "unterminated XML declaration")
    try:
        XmlStreamParser().feed(data[:end] + b"<x/>")
    except StreamParseError as exc:
        raise stream.fail(exc.condition, exc.text) from None
    return data[end:]


def parse_fragment(
    data: bytes,
    default_ns: str = "jabber:client",
    *,
    max_stanza_bytes: int = 262144,
    max_depth: int = 64,
    max_nodes: int | None = None,
) -> Element:
    """Parse one self-contained element (stored XML, or a single RFC 7395 message).

    Elements without a namespace declaration get `default_ns`.  Errors as for
    `FramedParser.parse`; a WebSocket connection should keep one `FramedParser` instead,
    which saves creating an expat parser per message.  `max_nodes` defaults to
    `max_stanza_bytes`, which never binds (a node takes 4 bytes or more): stored XML
    passed the budget when it arrived, and callers give its own length as the limit,
    so a budget derived from that would refuse what the stream accepted.
    """
    if max_nodes is None:
        max_nodes = max_stanza_bytes
    parser = FramedParser(
        default_ns, max_stanza_bytes=max_stanza_bytes, max_depth=max_depth, max_nodes=max_nodes
    )
    return parser.parse(data)
