"""XmlStreamParser: stream events, restricted XML, encodings and limits (RFC 6120 §4, §11).

Every case is fed whole, byte by byte and randomly split (the `transcript` fixture).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import PeerProtocolError
from chatgate.vocabulary.errors import StreamErrorCondition as Cond
from chatgate.xml.element import LANG
from chatgate.xml.parser import (
    Stanza,
    StreamClosed,
    StreamOpened,
    StreamParseError,
    XmlStreamParser,
)

Transcript = Callable[..., object]

HEADER = (
    b"<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' "
    b"xml:lang='en'>"
)
OPEN = (
    "open",
    "stream",
    ns.STREAMS,
    {"to": "localhost", "version": "1.0", LANG: "en"},
    ns.CLIENT,
    {"stream": ns.STREAMS},
)


def stanza(name: str, attrs: dict[str, str] | None = None, *children: object) -> tuple[object, ...]:
    return ("stanza", (ns.CLIENT, name, attrs or {}, list(children)))


# ---------------------------------------------------------------------------- stream events


def test_stream_header_opens_stream(transcript: Transcript) -> None:
    out = transcript(HEADER)
    assert out.events == [OPEN]
    assert out.error is None


def test_stanzas_are_identical_however_split(transcript: Transcript) -> None:
    data = (
        HEADER
        + (
            " <message to='user2@localhost' id='a&amp;1' type='chat' xml:lang='fr'>"
            "<body>h\u00e9llo &lt;&#65;&#x1F600;&gt; \U0001f600 \u20ac<![CDATA[<raw>]]> end</body>"
            "<active xmlns='http://jabber.org/protocol/chatstates'/>"
            "<x xmlns='jabber:x:data' type='submit'><field var='a'><value>1</value></field></x>"
            "</message>\n\t"
            "<presence/>"
            "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>"
            "</stream:stream>"
        ).encode()
    )
    out = transcript(data)
    assert out.error is None
    assert out.events == [
        OPEN,
        stanza(
            "message",
            {"to": "user2@localhost", "id": "a&1", "type": "chat", LANG: "fr"},
            (ns.CLIENT, "body", {}, ["h\u00e9llo <A\U0001f600> \U0001f600 \u20ac<raw> end"]),
            ("http://jabber.org/protocol/chatstates", "active", {}, []),
            (
                "jabber:x:data",
                "x",
                {"type": "submit"},
                [("jabber:x:data", "field", {"var": "a"}, [("jabber:x:data", "value", {}, ["1"])])],
            ),
        ),
        stanza("presence"),
        stanza("iq", {"type": "get", "id": "p"}, ("urn:xmpp:ping", "ping", {}, [])),
        ("close",),
    ]


def test_whitespace_keepalive_produces_no_event() -> None:
    parser = XmlStreamParser()
    parser.feed(HEADER)
    assert parser.feed(b" ") == []
    assert parser.feed(b"\n\r\n\t ") == []
    assert parser.is_open


def test_text_split_across_feeds_is_one_text_node() -> None:
    parser = XmlStreamParser()
    parser.feed(HEADER + b"<message><body>hel")
    parser.feed(b"lo &amp;")
    (event,) = parser.feed(b" bye</body></message>")
    assert isinstance(event, Stanza)
    body = event.element.find("body")
    assert body is not None
    assert body.children == ["hello & bye"]


def test_text_trickled_byte_by_byte_is_one_text_node() -> None:
    parser = XmlStreamParser()
    parser.feed(HEADER + b"<message><body>")
    text = "\u00e9t\u00e9 " * 2000
    for i, byte in enumerate(text.encode()):
        assert parser.feed(bytes([byte])) == [], i
    (event,) = parser.feed(b"</body></message>")
    assert isinstance(event, Stanza)
    body = event.element.find("body")
    assert body is not None and body.children == [text]


def test_whitespace_around_the_header_is_accepted(transcript: Transcript) -> None:
    out = transcript(HEADER.replace(b"?>\n", b"?>\r\n \t") + b"\n <presence/>")
    assert out.events == [OPEN, stanza("presence")]
    without_declaration = HEADER[HEADER.index(b"\n") :]
    assert transcript(b"\n\t " + without_declaration).events == [OPEN]


def test_event_types_and_stream_close() -> None:
    parser = XmlStreamParser()
    events = parser.feed(HEADER + b"<presence/></stream:stream>")
    assert [type(e) for e in events] == [StreamOpened, Stanza, StreamClosed]
    assert not parser.is_open
    assert parser.feed(b"\n") == []  # trailing whitespace after the document is allowed


def test_stream_without_xml_declaration_or_content_namespace(transcript: Transcript) -> None:
    out = transcript(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a/>")
    assert out.events == [
        ("open", "stream", ns.STREAMS, {}, None, {"stream": ns.STREAMS}),
        ("stanza", ("", "a", {}, [])),
    ]


def test_reset_starts_a_fresh_stream() -> None:
    # RFC 6120 §4.3.3: after STARTTLS/SASL both sides start a new stream on a new parser.
    parser = XmlStreamParser()
    parser.feed(HEADER + b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    parser.reset()
    events = parser.feed(HEADER)
    assert [type(e) for e in events] == [StreamOpened]


def test_reset_clears_a_failure() -> None:
    parser = XmlStreamParser()
    with pytest.raises(PeerProtocolError):
        parser.feed(b"<!-- x -->")
    parser.reset()
    assert len(parser.feed(HEADER)) == 1


def test_events_before_an_error_ride_on_the_exception() -> None:
    parser = XmlStreamParser()
    with pytest.raises(StreamParseError) as info:
        parser.feed(HEADER + b"<presence/><message><!-- no --></message>")
    assert info.value.condition is Cond.RESTRICTED_XML
    assert [type(e) for e in info.value.events] == [StreamOpened, Stanza]


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        XmlStreamParser(max_stanza_bytes=0)
    with pytest.raises(ValueError):
        XmlStreamParser(max_depth=0)


# ---------------------------------------------------------------------------- restricted XML


def test_doctype_is_restricted_xml(transcript: Transcript) -> None:
    out = transcript(b"<?xml version='1.0'?><!DOCTYPE stream><stream:stream/>")
    assert out.condition is Cond.RESTRICTED_XML
    assert out.events == []


def test_external_entity_is_restricted_xml(transcript: Transcript) -> None:
    data = (
        b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>&xxe;"
    )
    assert transcript(data).condition is Cond.RESTRICTED_XML


def test_billion_laughs_costs_nothing() -> None:
    decls = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    data = (
        f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">{decls}]>'
        f"<stream:stream xmlns:stream='{ns.STREAMS}'><a>{'&lol9;' * 1000}</a>"
    ).encode()
    parser = XmlStreamParser()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(StreamParseError) as info:
            parser.feed(data)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.condition is Cond.RESTRICTED_XML
    assert parser._fed < 100  # expat never saw more than the start of the DOCTYPE
    assert peak < 1_000_000  # 10**9 "lol"s would be gigabytes
    assert elapsed < 1.0  # generous: expansion would take minutes


def test_quadratic_blowup_is_restricted_xml(transcript: Transcript) -> None:
    big = "x" * 5000
    data = (
        f'<!DOCTYPE s [<!ENTITY a "{big}">]>'
        f"<stream:stream xmlns:stream='{ns.STREAMS}'><m>{'&a;' * 200}</m>"
    ).encode()
    assert transcript(data).condition is Cond.RESTRICTED_XML


def test_comment_is_restricted_xml(transcript: Transcript) -> None:
    assert transcript(b"<!-- hello --><stream:stream/>").condition is Cond.RESTRICTED_XML
    out = transcript(HEADER + b"<presence/><message><!-- x --></message>")
    assert out.condition is Cond.RESTRICTED_XML
    assert out.events == [OPEN, stanza("presence")]


def test_processing_instruction_is_restricted_xml(transcript: Transcript) -> None:
    out = transcript(b"<?xml version='1.0'?><?xml-stylesheet href='a'?><stream:stream/>")
    assert out.condition is Cond.RESTRICTED_XML
    assert transcript(HEADER + b"<message><?pi x?></message>").condition is Cond.RESTRICTED_XML


def test_undeclared_entity_is_restricted_xml(transcript: Transcript) -> None:
    # §11.1 prohibits entity references other than the predefined ones; §4.9.3.18 names
    # "XML entity reference" under <restricted-xml/>.
    assert transcript(HEADER + b"<message>&nbsp;</message>").condition is Cond.RESTRICTED_XML
    assert transcript(HEADER + b"<message a='&x;'/>").condition is Cond.RESTRICTED_XML


def test_predefined_entities_and_character_references_are_accepted(
    transcript: Transcript,
) -> None:
    out = transcript(HEADER + b"<m a='&quot;&apos;&#9;'>&amp;&lt;&gt;&quot;&apos;&#233;&#xE9;</m>")
    assert out.error is None
    assert out.events[1] == ("stanza", (ns.CLIENT, "m", {"a": "\"'\t"}, ["&<>\"'\u00e9\u00e9"]))


# ---------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    "bad",
    [
        b"\xff",  # never valid in UTF-8
        b"\xc0\xaf",  # overlong '/'
        b"\xed\xa0\x80",  # an encoded surrogate
        b"\xe2\x82",  # truncated sequence followed by ASCII
        b"\xf4\x90\x80\x80",  # beyond U+10FFFF
        b"\xe9t\xe9",  # Latin-1 sent as if it were UTF-8
    ],
)
def test_invalid_utf8_is_unsupported_encoding(transcript: Transcript, bad: bytes) -> None:
    out = transcript(HEADER + b"<presence/><message><body>caf" + bad + b"!</body></message>")
    assert out.condition is Cond.UNSUPPORTED_ENCODING
    assert out.events == [OPEN, stanza("presence")]


def test_invalid_utf8_in_a_tag_is_unsupported_encoding(transcript: Transcript) -> None:
    out = transcript(HEADER + b"<mess\xffage/>")
    assert out.condition is Cond.UNSUPPORTED_ENCODING


def test_utf16_is_unsupported_encoding(transcript: Transcript) -> None:
    data = "<?xml version='1.0'?><stream:stream>".encode("utf-16")  # starts with a BOM
    assert transcript(data).condition is Cond.UNSUPPORTED_ENCODING


def test_declared_non_utf8_encoding_is_unsupported_encoding(transcript: Transcript) -> None:
    data = b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream>"
    assert transcript(data).condition is Cond.UNSUPPORTED_ENCODING


def test_declared_utf8_in_any_case_is_accepted(transcript: Transcript) -> None:
    data = HEADER.replace(b"version='1.0'?>", b"version='1.0' encoding='utf-8'?>", 1)
    assert data != HEADER
    assert transcript(data).events == [OPEN]


def test_byte_order_mark_is_not_well_formed(transcript: Transcript) -> None:
    # RFC 6120 §11.6: U+FEFF must be read as a zero-width no-break space: text in the prolog.
    assert transcript(b"\xef\xbb\xbf" + HEADER).condition is Cond.NOT_WELL_FORMED


def test_multibyte_characters_split_anywhere(transcript: Transcript) -> None:
    text = "\u00e9\u20ac\U0001f600\u4e2d"
    out = transcript(HEADER + f"<m>{text}</m>".encode())
    assert out.events[1] == ("stanza", (ns.CLIENT, "m", {}, [text]))


# ---------------------------------------------------------------------------- namespaces


def test_unbound_prefix_is_bad_namespace_prefix(transcript: Transcript) -> None:
    out = transcript(HEADER + b"<presence/><foo:message/>")
    assert out.condition is Cond.BAD_NAMESPACE_PREFIX
    assert out.events == [OPEN, stanza("presence")]


def test_unbound_attribute_prefix_is_bad_namespace_prefix(transcript: Transcript) -> None:
    assert transcript(HEADER + b"<message foo:bar='1'/>").condition is Cond.BAD_NAMESPACE_PREFIX


def test_prefixed_elements_and_attributes_resolve(transcript: Transcript) -> None:
    out = transcript(HEADER + b"<message xmlns:e='urn:e'><e:x e:a='1' b='2'/></message>")
    assert out.events[1] == (
        "stanza",
        (ns.CLIENT, "message", {}, [("urn:e", "x", {"{urn:e}a": "1", "b": "2"}, [])]),
    )


def test_namespace_with_a_space_is_kept_whole(transcript: Transcript) -> None:
    # Why the separator is U+0001: a space in a namespace name cannot confuse the split.
    out = transcript(HEADER + b"<m xmlns='urn:a b'/>")
    assert out.events[1] == ("stanza", ("urn:a b", "m", {}, []))


# ---------------------------------------------------------------------------- not well-formed


@pytest.mark.parametrize(
    "data",
    [
        b"hello<stream:stream/>",  # text before the header
        b" <?xml version='1.0'?><stream:stream/>",  # the declaration must come first
        HEADER + b"<message></presence>",  # mismatched tags
        HEADER + b"<message a='1' a='2'/>",  # duplicate attribute
        HEADER + b"<message>\x01</message>",  # a character XML forbids
        HEADER + b"<message>&#0;</message>",  # ...also as a reference
        HEADER + b"<message><<</message>",
        HEADER + b"<stream:stream>",  # a second header is just a nested element...
    ],
)
def test_malformed_xml_is_not_well_formed(transcript: Transcript, data: bytes) -> None:
    out = transcript(data)
    if data.endswith(b"<stream:stream>"):
        # ...which only fails once it ends up unclosed or mismatched; it is a depth-1
        # element of the streams namespace that the session will reject.
        assert out.error is None
        return
    assert out.condition is Cond.NOT_WELL_FORMED


def test_junk_after_stream_close_is_not_well_formed(transcript: Transcript) -> None:
    out = transcript(HEADER + b"</stream:stream><presence/>")
    assert out.condition is Cond.NOT_WELL_FORMED
    assert out.events == [OPEN, ("close",)]


def test_text_between_stanzas_is_bad_format(transcript: Transcript) -> None:
    out = transcript(HEADER + b"<presence/> hello <presence/>")
    assert out.condition is Cond.BAD_FORMAT
    assert out.events == [OPEN, stanza("presence")]


# ---------------------------------------------------------------------------- limits


def test_stanza_at_the_limit_is_accepted(transcript: Transcript) -> None:
    # Counted from the '<' of the start tag to the '<' of the end tag.
    start, end = b"<message><body>", b"</body></message>"
    limit = 200
    body = b"x" * (limit - len(start) - len(b"</body>"))
    out = transcript(HEADER + start + body + end, max_stanza_bytes=limit)
    assert out.error is None
    assert len(out.events) == 2


def test_stanza_one_byte_over_the_limit_is_policy_violation(transcript: Transcript) -> None:
    start, end = b"<message><body>", b"</body></message>"
    limit = 200
    body = b"x" * (limit - len(start) - len(b"</body>") + 1)
    out = transcript(HEADER + b"<presence/>" + start + body + end, max_stanza_bytes=limit)
    assert out.condition is Cond.POLICY_VIOLATION
    assert out.events == [OPEN, stanza("presence")]


def test_stanza_over_limit_is_policy_violation_before_buffering() -> None:
    limit = 100_000
    parser = XmlStreamParser(max_stanza_bytes=limit)
    parser.feed(HEADER + b"<message><body>")
    sent = 0
    chunk = b"A" * 8192
    with pytest.raises(StreamParseError) as info:
        while sent < 100 * limit:  # a "100 MB" stanza, never finished
            parser.feed(chunk)
            sent += len(chunk)
    assert info.value.condition is Cond.POLICY_VIOLATION
    assert sent <= limit  # refused on the first chunk that crossed the limit


def test_one_huge_feed_is_refused_slice_by_slice() -> None:
    parser = XmlStreamParser(max_stanza_bytes=100_000)
    with pytest.raises(StreamParseError) as info:
        parser.feed(HEADER + b"<message><body>" + b"A" * 5_000_000)
    assert info.value.condition is Cond.POLICY_VIOLATION


def test_oversized_start_tag_is_policy_violation(transcript: Transcript) -> None:
    data = HEADER + b"<message a='" + b"x" * 1000 + b"'><body/></message>"
    assert transcript(data, max_stanza_bytes=500).condition is Cond.POLICY_VIOLATION


def test_oversized_empty_element_stanza_is_policy_violation(transcript: Transcript) -> None:
    # An empty-element stanza is counted to the end of its tag.
    data = HEADER + b"<presence a='" + b"x" * 1000 + b"'/>"
    assert transcript(data, max_stanza_bytes=500).condition is Cond.POLICY_VIOLATION


def test_unfinished_giant_tag_is_refused_while_arriving() -> None:
    parser = XmlStreamParser(max_stanza_bytes=10_000)
    parser.feed(HEADER + b"<message a='")
    with pytest.raises(StreamParseError) as info:
        for _ in range(100):
            parser.feed(b"x" * 1000)
    assert info.value.condition is Cond.POLICY_VIOLATION


def test_stream_header_at_the_limit_is_accepted(transcript: Transcript) -> None:
    # The prolog (declaration, whitespace, header) counts like a stanza.
    assert transcript(HEADER, max_stanza_bytes=len(HEADER)).events == [OPEN]


def test_stream_header_over_the_limit_is_policy_violation(transcript: Transcript) -> None:
    out = transcript(HEADER, max_stanza_bytes=len(HEADER) - 1)
    assert out.condition is Cond.POLICY_VIOLATION
    assert out.events == []


def test_oversized_doctype_is_refused_consistently(transcript: Transcript) -> None:
    out = transcript(b"<!DOCTYPE " + b"x" * 500 + b">", max_stanza_bytes=100)
    assert out.condition is Cond.POLICY_VIOLATION


def test_oversized_stream_header_is_policy_violation() -> None:
    parser = XmlStreamParser(max_stanza_bytes=10_000)
    parser.feed(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='")
    with pytest.raises(StreamParseError) as info:
        for _ in range(100):
            parser.feed(b"x" * 1000)
    assert info.value.condition is Cond.POLICY_VIOLATION


def test_many_stanzas_each_under_the_limit_are_fine(transcript: Transcript) -> None:
    one = b"<message><body>" + b"y" * 170 + b"</body></message>"
    out = transcript(HEADER + one * 50, max_stanza_bytes=200)
    assert out.error is None
    assert len(out.events) == 51


def test_nesting_at_max_depth_is_accepted(transcript: Transcript) -> None:
    # The stream element is depth 0, the stanza depth 1: 4 levels below the stream.
    data = HEADER + b"<a><b><c><d/></c></b></a>"
    assert transcript(data, max_depth=4).error is None


def test_nesting_deeper_than_max_depth_is_policy_violation(transcript: Transcript) -> None:
    data = HEADER + b"<a><b><c><d><e/></d></c></b></a>"
    assert transcript(data, max_depth=4).condition is Cond.POLICY_VIOLATION


def test_deep_nesting_attack_is_refused_early() -> None:
    parser = XmlStreamParser()
    with pytest.raises(StreamParseError) as info:
        parser.feed(HEADER + b"<a>" * 100_000)
    assert info.value.condition is Cond.POLICY_VIOLATION


def test_errors_are_peer_protocol_errors() -> None:
    parser = XmlStreamParser()
    with pytest.raises(PeerProtocolError):
        parser.feed(b"<!DOCTYPE x>")


# ---------------------------------------------------------------------------- property

_SAMPLE = (
    HEADER
    + (
        " <message to='a@b' id='1' xml:lang='fr'><body>h\u00e9llo &amp; \U0001f600</body>"
        "<x xmlns='urn:x' a='&quot;'/></message>\n<presence/></stream:stream>"
    ).encode()
)
_PIECES = [
    *(b"<", b">", b"/", b"&", b";", b"\xc3", b"\xa9", b"\xff", b"'", b"!--", b"x:", b" "),
    *(b"<!DOCTYPE a>", b"<?pi?>", b"</", b"<![CDATA[", b"\xe2\x82", b"&#", b"hello", b"\t"),
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(_SAMPLE)), st.integers(0, 3), st.sampled_from(_PIECES)),
        max_size=4,
    )
)
@example(edits=[(len(_SAMPLE), 0, b"\xa9")])  # a bad byte after the end tag: junk
def test_any_input_gives_one_outcome_however_split(
    transcript: Transcript, edits: list[tuple[int, int, bytes]]
) -> None:
    # Damage a valid stream at random; whatever the verdict, splitting must not change it.
    # (Default limits: with input both over a limit and malformed, the module docstring
    # says which condition wins may depend on splitting.)
    data = _SAMPLE
    for at, drop, insert in edits:
        data = data[:at] + insert + data[at + drop :]
    transcript(data)


@pytest.mark.parametrize("trailer", [b"<?pi?>", b"<!-- c -->"])
def test_restricted_markup_after_the_end_tag_is_junk_however_split(trailer: bytes) -> None:
    """Found by the split-invariance property: after </stream:stream> a PI or comment
    is junk (not-well-formed) whether it arrives with the end tag or later."""
    data = (
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'></stream:stream>"
        + trailer
    )
    outcomes = set()
    for size in (len(data), 1):
        parser = XmlStreamParser()
        try:
            for i in range(0, len(data), size):
                parser.feed(data[i : i + size])
        except StreamParseError as exc:
            outcomes.add(exc.condition)
    assert outcomes == {Cond.NOT_WELL_FORMED}
