"""BOSH bodies (XEP-0124 §4, XEP-0206 §4): parsing a request's `<body/>` and writing
the response bodies.  Pure functions: no I/O, no clock, no session state.

A request body is judged as a fresh `XmlStreamParser` judges it (the stream
parser's restricted-XML checks, stanza size and depth limits): the `<body/>` is the
stream element, its children the stanzas.  Creating that parser cost more than the
rest of a request's handling, so an ordinary body (see `_parse_shared`) goes
through a parser shared by every request instead (`shared_parsers.py`), as one
element, under limits chosen so that it accepts exactly what the fresh parser
accepts; anything else, and every body the shared parser refuses, is parsed by a
fresh parser, whose verdict (and error text) is the answer; it is fed in slices
(`BodyParser`), so that its caller can yield to the event loop between them and
it can stop as soon as a body has more stanzas than allowed.  Children in the httpbind namespace (a
`<message/>` written without its own `xmlns`) are taken as `jabber:client`
stanzas, as every other server does (COMPAT: XEP-0206 §5 asks clients to qualify
them; many do not).

Terminal conditions (XEP-0124 §17.2) that a stream error maps to directly are
reported as themselves; every other stream error is `remote-stream-error` with the
`<stream:error/>` inside (XEP-0206 §7).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chatgate.http.shared_parsers import parse_message
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import PeerProtocolError, StreamErrorCondition
from chatgate.xml.element import LANG, Element
from chatgate.xml.names import MAX_HEADER_DECLARATIONS
from chatgate.xml.parser import (
    NODE_BYTES,
    Stanza,
    StreamClosed,
    StreamEvent,
    StreamOpened,
    XmlStreamParser,
)
from chatgate.xml.serialize import escape_attr

HTTPBIND = ns.HTTPBIND
XBOSH = ns.XBOSH

#: The protocol version this connection manager speaks (XEP-0124 §7.1 `ver`).
VERSION = (1, 11)

XBOSH_VERSION = "{" + XBOSH + "}version"
XBOSH_RESTART = "{" + XBOSH + "}restart"

CONTENT_TYPE = "text/xml; charset=utf-8"
#: a client's `content` we repeat (XEP-0124 §7.1): an XML type, UTF-8 or none said
_CONTENT = re.compile(r"^(text|application)/([a-z0-9.+-]*\+)?xml(;\s*charset=utf-8)?$", re.I)

#: Stream errors reported by their own XEP-0124 §17.2 condition.
_MAPPED = frozenset(
    {
        StreamErrorCondition.HOST_GONE,
        StreamErrorCondition.HOST_UNKNOWN,
        StreamErrorCondition.IMPROPER_ADDRESSING,
        StreamErrorCondition.INTERNAL_SERVER_ERROR,
        StreamErrorCondition.POLICY_VIOLATION,
        StreamErrorCondition.REMOTE_CONNECTION_FAILED,
        StreamErrorCondition.SYSTEM_SHUTDOWN,
        StreamErrorCondition.UNDEFINED_CONDITION,
    }
)

_SID_ATTR = re.compile(rb"""\ssid\s*=\s*(?:'([^']*)'|"([^"]*)")""")


class BadBody(Exception):
    """The request is not a BOSH body we can process (XEP-0124 §17.2 `bad-request`),
    or one of its stanzas broke a stream rule (`error`, when the parser said so)."""

    def __init__(self, text: str, error: PeerProtocolError | None = None) -> None:
        super().__init__(text)
        self.error = error


@dataclass(frozen=True, slots=True)
class RequestBody:
    """One parsed request: the `<body/>` attributes and its stanzas, in order."""

    attrs: dict[str, str]
    stanzas: list[Element]

    @property
    def sid(self) -> str | None:
        return self.attrs.get("sid")

    @property
    def rid(self) -> int:
        return int(self.attrs["rid"])

    @property
    def terminate(self) -> bool:
        return self.attrs.get("type") == "terminate"

    @property
    def restart(self) -> bool:
        return self.attrs.get(XBOSH_RESTART) in ("true", "1")

    def int_attr(self, name: str) -> int | None:
        """A non-negative integer attribute, or None when absent; BadBody when not one."""
        value = self.attrs.get(name)
        if value is None:
            return None
        if not is_number(value) or len(value) > 10:
            raise BadBody(f"{name}={value!r} is not a non-negative integer")
        return int(value)

    def stream_opened(self, creation: RequestBody | None = None) -> StreamOpened:
        """The stream header this body stands for (session creation, restart): what a
        TCP client would have sent, so the negotiation core judges it the same way.
        A restart body (XEP-0206 §5) need not repeat the creation body's `to`,
        `xml:lang` and `xmpp:version`: those come from `creation`."""
        attrs: dict[str, str] = {}
        for key, name in (("to", "to"), ("from", "from"), (LANG, LANG), (XBOSH_VERSION, "version")):
            value = self.attrs.get(key)
            if value is None and creation is not None:
                value = creation.attrs.get(key)
            if value is not None:
                attrs[name] = value
        return StreamOpened("stream", ns.STREAMS, attrs, ns.CLIENT, {"stream": ns.STREAMS})


def is_number(value: str) -> bool:
    """ASCII digits only: `str.isdigit` also accepts '²' (which `int` refuses) and
    other scripts' digits (which `int` reads), neither of which XEP-0124 allows."""
    return value.isascii() and value.isdigit()


def peek_sid(data: bytes) -> str | None:
    """The `sid` a body seems to carry, read before parsing so that the parser gets the
    session's stanza limit; the parsed value must agree (`parse` callers check)."""
    end = data.find(b">")
    match = _SID_ATTR.search(data, 0, end if end >= 0 else len(data))
    if match is None:
        return None
    return (match.group(1) or match.group(2) or b"").decode("utf-8", "replace")


def parse(
    data: bytes, *, max_stanza_bytes: int, max_depth: int, max_children: int | None = None
) -> RequestBody:
    """Parse one request body at once; raises BadBody (with the parser's error when a
    stream rule was broken: over-size or over-deep stanza, restricted XML, more than
    `max_children` stanzas ...).  `BodyParser` does the same in slices."""
    parser = BodyParser(
        data, max_stanza_bytes=max_stanza_bytes, max_depth=max_depth, max_children=max_children
    )
    while True:
        body = parser.step(len(data) + 1)
        if body is not None:
            return body


#: bytes the fresh parser is fed between two checks of the number of stanzas: what
#: it may parse past `max_children` (8 KiB of `<a/>`: ~2,000 elements, ~3 ms)
_FEED = 8192


class BodyParser:
    """One body, parsed in steps so that a large one does not hold the event loop:
    each `step(budget)` parses about `budget` bytes and returns the body once it is
    complete (None before).  An ordinary body is done in the first step, through the
    shared parser; others go through a fresh stream parser, `_FEED` bytes at a time,
    which stops as soon as the body has more than `max_children` stanzas
    (`policy-violation`), so a body of 250,000 empty children costs a few
    milliseconds, not a second.  Same verdicts as parsing the body whole."""

    __slots__ = (
        "_data",
        "_events",
        "_max_children",
        "_max_depth",
        "_max_stanza",
        "_parser",
        "_pos",
        "_stanzas",
    )

    def __init__(
        self,
        data: bytes,
        *,
        max_stanza_bytes: int,
        max_depth: int,
        max_children: int | None = None,
    ) -> None:
        self._data = data
        self._max_stanza = max_stanza_bytes
        self._max_depth = max_depth
        self._max_children = max_children
        self._parser: XmlStreamParser | None = None
        self._events: list[StreamEvent] = []
        self._stanzas = 0
        self._pos = 0

    def step(self, budget: int) -> RequestBody | None:
        """Parse on (about `budget` bytes); the body when complete.  BadBody when refused."""
        parser = self._parser
        data = self._data
        if parser is None:
            # Each child takes at least one '<': with few enough of them the shared
            # parser cannot meet more stanzas than allowed.
            limit = self._max_children
            if limit is None or data.count(b"<") <= limit + 2:
                body = _parse_shared(data, self._max_stanza, self._max_depth)
                if body is not None:
                    return body
            parser = self._parser = XmlStreamParser(
                max_stanza_bytes=self._max_stanza, max_depth=self._max_depth
            )
        end = min(len(data), self._pos + max(budget, 1))
        while self._pos < end:
            piece = data[self._pos : self._pos + _FEED]
            self._pos += len(piece)
            try:
                events = parser.feed(piece)
            except PeerProtocolError as exc:
                raise BadBody(exc.text or exc.condition.value, exc) from None
            self._count(events)
            self._events.extend(events)
        if self._pos < len(data):
            return None
        return _body_of(self._events)

    def _count(self, events: list[StreamEvent]) -> None:
        limit = self._max_children
        if limit is None:
            return
        for event in events:
            if type(event) is Stanza:
                self._stanzas += 1
        if self._stanzas > limit:
            text = f"more than {limit} stanzas in one body"
            raise BadBody(text, PeerProtocolError(StreamErrorCondition.POLICY_VIOLATION, text))


_BODY_START = b"<body "
_XML_WHITESPACE = " \t\r\n"
#: a namespace prefix this long may be over MAX_NAME_BYTES: for the fresh parser
_LONG_PREFIX = re.compile(rb"xmlns:[^\s=]{200,}")


def _parse_shared(data: bytes, max_stanza_bytes: int, max_depth: int) -> RequestBody | None:
    """The body through the shared parser, or None when only a fresh parser can judge it.

    The shared parser sees the `<body/>` as one element, not as a stream of
    stanzas; these conditions make its verdict the fresh parser's:

    * the body begins `<body ` (no XML declaration, BOM or whitespace: the
      prolog rules are the fresh parser's) and its start tag is at most 1,024
      bytes with at most 16 `xmlns` in it and no long prefix: the rules on
      the stream header's namespace declarations can then not be broken;
    * the body is at most `max_stanza_bytes` bytes, so no stanza in it can be
      over the size limit, and at most 4 bytes per node of the per-stanza node
      budget (`max(64, max_stanza_bytes // NODE_BYTES)`): every node (element or
      attribute) takes 4 bytes or more (`<a/>`, ` a=""`), so no stanza in it
      can be over that budget either; the shared parser's own budget
      (`max_stanza_bytes` nodes for the whole body) cannot bind;
    * nesting: the body is one level more, so the depth limit is one more;
    * text between the stanzas is refused on a stream: here it would be the
      body's text, so any is sent to the fresh parser.

    Whatever the shared parser refuses, the fresh parser judges again."""
    size = len(data)
    if size > max_stanza_bytes or size > 4 * max(64, max_stanza_bytes // NODE_BYTES):
        return None
    if not data.startswith(_BODY_START):
        return None
    end = data.find(b">", 0, 1025)
    if end < 0 or data.count(b"xmlns", 0, end) > MAX_HEADER_DECLARATIONS:
        return None
    if end > 200 and _LONG_PREFIX.search(data, 0, end):
        return None
    try:
        el = parse_message(data, "", max_stanza_bytes, max_depth + 1, max_stanza_bytes)
    except PeerProtocolError:
        return None
    if el.name != "body" or el.ns != HTTPBIND:
        return None
    rid = el.attrs.get("rid", "")
    if not is_number(rid) or len(rid) > 16:
        return None
    stanzas = []
    for child in el.children:
        if isinstance(child, Element):
            stanzas.append(client_stanza(child))
        elif child.strip(_XML_WHITESPACE):
            return None
    return RequestBody(el.attrs, stanzas)


def _parse_alone(data: bytes, max_stanza_bytes: int, max_depth: int) -> RequestBody:
    """The body through a fresh stream parser, whole: the authoritative verdict."""
    parser = XmlStreamParser(max_stanza_bytes=max_stanza_bytes, max_depth=max_depth)
    try:
        events = parser.feed(data)
    except PeerProtocolError as exc:
        raise BadBody(exc.text or exc.condition.value, exc) from None
    return _body_of(events)


def _body_of(events: list[StreamEvent]) -> RequestBody:
    """The body a fresh stream parser's events (the whole body's) stand for: the
    authoritative verdict."""
    if not events or type(events[0]) is not StreamOpened:
        raise BadBody("no <body/>")
    opened = events[0]
    if opened.name != "body" or opened.ns != HTTPBIND:
        raise BadBody(f"the root element must be <body xmlns='{HTTPBIND}'/>")
    if type(events[-1]) is not StreamClosed:
        raise BadBody("the <body/> is incomplete")
    rid = opened.attrs.get("rid", "")
    if not is_number(rid) or len(rid) > 16:
        raise BadBody("a body needs a numeric rid")
    stanzas = [client_stanza(e.element) for e in events[1:-1] if type(e) is Stanza]
    return RequestBody(opened.attrs, stanzas)


def client_stanza(el: Element) -> Element:
    """A child of `<body/>` as a `jabber:client` stanza: one that inherited the body's
    namespace (or none) is moved to `jabber:client`, with its children of the same
    namespace; anything with its own namespace keeps it."""
    if el.ns in (HTTPBIND, ""):
        _requalify(el, el.ns)
    return el


def _requalify(el: Element, old: str) -> None:
    el.ns = ns.CLIENT
    for child in el.children:
        if type(child) is Element and child.ns == old:
            _requalify(child, old)


def content_type(requested: str | None) -> str:
    """The response Content-Type: the client's `content` when it is an XML type in
    UTF-8, else text/xml (XEP-0124 §7.1)."""
    if requested and _CONTENT.match(requested.strip()):
        return requested.strip()
    return CONTENT_TYPE


def condition_for(error: StreamErrorCondition | None) -> tuple[str, bool]:
    """The terminal condition a stream error gives, and whether the `<stream:error/>`
    goes inside the body (`remote-stream-error`)."""
    if error is None:
        return "", False
    if error in _MAPPED:
        return error.value, False
    return "remote-stream-error", True


def body(children: bytes = b"", attrs: str = "") -> bytes:
    """A response `<body/>` with these serialized attributes (leading space each)."""
    head = f"<body xmlns='{HTTPBIND}'{attrs}".encode()
    if not children:
        return head + b"/>"
    return head + b">" + children + b"</body>"


def terminate(condition: str = "", children: bytes = b"", attrs: str = "") -> bytes:
    """A `type='terminate'` body (XEP-0124 §13, §17.2); `condition` empty for a clean end."""
    cond = f" condition='{escape_attr(condition)}'" if condition else ""
    declared = "xmlns:stream=" in attrs
    decl = f" xmlns:stream='{ns.STREAMS}'" if b"<stream:" in children and not declared else ""
    return body(children, f" type='terminate'{cond}{decl}{attrs}")
