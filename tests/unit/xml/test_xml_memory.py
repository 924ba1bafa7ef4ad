"""Memory a peer could pin through the parser (issue 9 item 6): name and namespace
lengths, the shared name cache, expat's per-parser tables, and one stanza's tree.

Over-long names are a local policy, not malformed XML: RFC 6120 §4.9.3.14
<policy-violation/>.  Cases that depend on splitting go through the `transcript`
fixture (fed whole, byte by byte and at random points).
"""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Callable

import pytest

from chatgate.vocabulary.errors import PeerProtocolError
from chatgate.vocabulary.errors import StreamErrorCondition as Cond
from chatgate.xml import names
from chatgate.xml.framed import FramedParser
from chatgate.xml.names import MAX_HEADER_DECLARATIONS, MAX_NAME_BYTES, MAX_NAMESPACE_BYTES
from chatgate.xml.parser import Stanza, StreamParseError, XmlStreamParser
from chatgate.xml.serialize import serialize

Transcript = Callable[..., object]

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
)
MiB = 1 << 20


def query(ns: str) -> bytes:
    return f"<iq type='get' id='1'><query xmlns='{ns}'/></iq>".encode()


def ns_of_bytes(n: int, fill: str = "a") -> str:
    """A namespace of exactly `n` UTF-8 bytes ("urn:" then `fill` repeated)."""
    body = fill * ((n - 4) // len(fill.encode()))
    text = "urn:" + body
    assert len(text.encode()) == n, (n, len(text.encode()))
    return text


# ---------------------------------------------------------------------------- lengths


def test_namespace_at_the_limit_is_accepted(transcript: Transcript) -> None:
    out = transcript(HEADER + query(ns_of_bytes(MAX_NAMESPACE_BYTES)))
    assert out.error is None
    assert out.stanzas[0].children[0].ns == ns_of_bytes(MAX_NAMESPACE_BYTES)


def test_namespace_over_the_limit_is_policy_violation(transcript: Transcript) -> None:
    out = transcript(HEADER + b"<presence/>" + query(ns_of_bytes(MAX_NAMESPACE_BYTES + 1)))
    assert out.condition is Cond.POLICY_VIOLATION
    assert len(out.events) == 2  # the header and the presence before it


def test_a_200_kb_namespace_is_refused() -> None:
    parser = XmlStreamParser()
    with pytest.raises(StreamParseError) as info:
        parser.feed(HEADER + query("urn:" + "x" * 200_000))
    assert info.value.condition is Cond.POLICY_VIOLATION


def test_namespace_length_is_counted_in_utf8_bytes(transcript: Transcript) -> None:
    # 3-byte characters: the over-long namespace is far shorter than the limit in characters.
    ok = ns_of_bytes(MAX_NAMESPACE_BYTES, "\u20ac")
    assert transcript(HEADER + query(ok)).error is None
    over = ok + "\u20ac"
    assert len(over) < MAX_NAMESPACE_BYTES // 2
    assert transcript(HEADER + query(over)).condition is Cond.POLICY_VIOLATION


def test_element_name_limit(transcript: Transcript) -> None:
    ok = "n" * MAX_NAME_BYTES
    assert transcript(HEADER + f"<message><{ok}/></message>".encode()).error is None
    over = "\u00e9" * (MAX_NAME_BYTES // 2 + 1)  # 2 bytes each
    out = transcript(HEADER + f"<message><{over}/></message>".encode())
    assert out.condition is Cond.POLICY_VIOLATION


@pytest.mark.parametrize(
    ("ns", "local", "ok"),
    [
        # At the character counts where the short-name shortcut ends, in the widest
        # UTF-8 (4 bytes a character): exactly at the byte limits, then one over.
        ("\U0001f600" * (MAX_NAMESPACE_BYTES // 4), "x", True),
        ("\U0001f600" * (MAX_NAMESPACE_BYTES // 4 + 1), "x", False),
        ("urn:x", "\U0001f600" * (MAX_NAME_BYTES // 4), True),
        ("urn:x", "\U0001f600" * (MAX_NAME_BYTES // 4 + 1), False),
        # Past the shortcut's character counts, but within the byte limits (ASCII).
        ("u" * MAX_NAMESPACE_BYTES, "n" * MAX_NAME_BYTES, True),
        ("u" * (MAX_NAMESPACE_BYTES + 1), "n", False),
        ("urn:x", "n" * (MAX_NAME_BYTES + 1), False),
    ],
)
def test_check_name_counts_utf8_bytes_on_both_sides_of_the_shortcut(
    ns: str, local: str, ok: bool
) -> None:
    if ok:
        names.check_name(ns, local, "element")
    else:
        with pytest.raises(PeerProtocolError) as err:
            names.check_name(ns, local, "element")
        assert err.value.condition is Cond.POLICY_VIOLATION


def test_stanza_name_limit(transcript: Transcript) -> None:
    over = "m" * (MAX_NAME_BYTES + 1)
    assert transcript(HEADER + f"<{over}/>".encode()).condition is Cond.POLICY_VIOLATION


def test_attribute_name_limit(transcript: Transcript) -> None:
    ok = "a" * MAX_NAME_BYTES
    out = transcript(HEADER + f"<message {ok}='1'/>".encode())
    assert out.error is None
    assert out.stanzas[0].attrs == {ok: "1"}
    over = "a" * (MAX_NAME_BYTES + 1)
    assert transcript(HEADER + f"<message {over}='1'/>".encode()).condition is Cond.POLICY_VIOLATION
    over = "\u00e9" * (MAX_NAME_BYTES // 2 + 1)
    assert transcript(HEADER + f"<message {over}='1'/>".encode()).condition is Cond.POLICY_VIOLATION


def test_plain_attribute_names_need_no_check_and_others_still_get_one(
    transcript: Transcript,
) -> None:
    """`names.PLAIN_ATTRS` lets the parser skip the per-attribute test: every name in it
    is short and unnamespaced, and one name outside it still gets checked."""
    assert all(names.SEP not in n and len(n) <= names.SHORT_NAME for n in names.PLAIN_ATTRS)
    plain = " ".join(f"{n}='v'" for n in sorted(names.PLAIN_ATTRS))
    out = transcript(HEADER + f"<message {plain}/>".encode())
    assert out.error is None
    assert out.stanzas[0].attrs == dict.fromkeys(names.PLAIN_ATTRS, "v")
    over = "a" * (MAX_NAME_BYTES + 1)
    data = HEADER + f"<message id='1' type='chat' {over}='1'/>".encode()
    assert transcript(data).condition is Cond.POLICY_VIOLATION
    out = transcript(HEADER + b"<message id='1' xml:lang='en'/>")
    assert out.stanzas[0].attrs == {"id": "1", "{http://www.w3.org/XML/1998/namespace}lang": "en"}


def test_a_closed_parser_is_freed_without_the_cycle_collector() -> None:
    """`close()` breaks every reference cycle between expat and the handlers, so a
    restart or a hibernation frees the old expat parser by reference counting."""
    import weakref

    parser = XmlStreamParser()
    parser.feed(HEADER + b"<message id='1'><body>hi</body></message>")
    gc.disable()
    try:
        expat_parser = parser._expat
        start = weakref.ref(expat_parser.StartElementHandler)
        text = weakref.ref(expat_parser.CharacterDataHandler)
        del expat_parser
        parser.close()
        del parser
        assert start() is None
        assert text() is None
    finally:
        gc.enable()


def test_namespaced_attribute_limits(transcript: Transcript) -> None:
    ok = ns_of_bytes(MAX_NAMESPACE_BYTES)
    out = transcript(HEADER + f"<message xmlns:p='{ok}' p:a='1'/>".encode())
    assert out.stanzas[0].attrs == {f"{{{ok}}}a": "1"}
    over = ns_of_bytes(MAX_NAMESPACE_BYTES + 1)
    data = HEADER + f"<message xmlns:p='{over}' p:a='1'/>".encode()
    assert transcript(data).condition is Cond.POLICY_VIOLATION
    data = HEADER + f"<message xmlns:p='urn:x' p:{'a' * (MAX_NAME_BYTES + 1)}='1'/>".encode()
    assert transcript(data).condition is Cond.POLICY_VIOLATION


def test_declared_but_unused_long_namespace_costs_nothing_and_passes(
    transcript: Transcript,
) -> None:
    # Only names that reach an element or attribute are checked (and cached); an
    # unused declaration is bytes of the stanza, counted by its size limit.
    data = HEADER + f"<message xmlns:p='{ns_of_bytes(5000)}'/>".encode()
    assert transcript(data).error is None


def test_stream_header_declarations_are_bounded(transcript: Transcript) -> None:
    def header(decls: str) -> bytes:
        return (
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
            f"{decls} to='localhost' version='1.0'>"
        ).encode()

    many = " ".join(f"xmlns:p{i}='urn:{i}'" for i in range(MAX_HEADER_DECLARATIONS - 2))
    out = transcript(header(many))
    assert out.error is None
    assert len(out.events[0][5]) == MAX_HEADER_DECLARATIONS - 1  # prefixes: stream + p*
    too_many = many + " xmlns:q='urn:q'"
    assert transcript(header(too_many)).condition is Cond.POLICY_VIOLATION
    long_uri = f"xmlns:p='{ns_of_bytes(MAX_NAMESPACE_BYTES + 1)}'"
    assert transcript(header(long_uri)).condition is Cond.POLICY_VIOLATION
    long_prefix = f"xmlns:{'p' * (MAX_NAME_BYTES + 1)}='urn:p'"
    assert transcript(header(long_prefix)).condition is Cond.POLICY_VIOLATION


# ---------------------------------------------------------------------------- the name cache


def _retained_after(work: Callable[[], None]) -> int:
    """Bytes still allocated once `work` is done and its garbage collected."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        work()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_the_shared_name_cache_is_bounded_in_bytes() -> None:
    """Unique namespaces just under the limit, from many short streams: what stays
    behind once the streams are gone is the name cache, at most its byte bound."""

    def flood() -> None:
        for i in range(3000):
            parser = XmlStreamParser()
            parser.feed(HEADER + query(f"urn:{i}:" + "x" * (MAX_NAMESPACE_BYTES - 20)))
            parser.close()

    retained = _retained_after(flood)
    assert retained <= 2 * MiB + MiB // 4, retained
    cache = names.NAMES
    assert cache.nbytes <= cache.max_bytes == 2 * MiB


def test_the_attribute_name_cache_is_bounded_in_bytes() -> None:
    def flood() -> None:
        for i in range(2000):
            parser = XmlStreamParser()
            ns = f"urn:{i}:" + "y" * (MAX_NAMESPACE_BYTES - 20)
            parser.feed(HEADER + f"<message xmlns:p='{ns}' p:a='1'/>".encode())
            parser.close()

    retained = _retained_after(flood)
    cache = names.ATTR_NAMES
    assert cache.nbytes <= cache.max_bytes == 256 * 1024
    assert retained <= cache.max_bytes + MiB // 4, retained


def test_common_names_are_still_cached_after_a_flood() -> None:
    parser = XmlStreamParser()
    parser.feed(HEADER)
    for i in range(5000):
        parser.feed(query(f"urn:flood:{i}"))
    parser.feed(b"<message><body>hi</body></message>")
    assert "jabber:client\x01message" in names.NAMES.mapping


# ---------------------------------------------------------------------------- one long stream


def _unique_names_stanza(i: int) -> bytes:
    """~16 KB of element names, attribute names and prefixes never seen before."""
    parts = [f"<iq id='{i}'>"]
    for j in range(200):
        parts.append(f"<e{i}x{j} xmlns:p{i}x{j}='urn:u' p{i}x{j}:a{i}x{j}='v' b{i}x{j}='w'/>")
    parts.append("</iq>")
    return "".join(parts).encode()


def test_a_long_stream_of_new_names_does_not_grow_the_parser() -> None:
    """expat keeps every element, attribute and prefix name it meets for the life of its
    parser (and pyexpat interned them all again): a session sending new names grew
    ~15 bytes per byte received, forever.  Bounded now by recycling expat."""
    parser = XmlStreamParser()
    parser.feed(HEADER)
    sent = 0

    def stream() -> None:
        nonlocal sent
        for i in range(200):
            data = _unique_names_stanza(i)
            sent += len(data)
            assert len(parser.feed(data)) == 1

    retained = _retained_after(stream)
    assert sent > 2 * MiB
    # The name cache (2 MiB at most) plus one expat parser's tables.
    assert retained < 2 * MiB + 4 * MiB, retained


# ---------------------------------------------------------------------------- recycling


STANZAS = [
    b"<message to='a@localhost' type='chat'><body>one &amp; two</body></message>",
    b"\n  ",
    b"<presence/>",
    b"<presence><show>away</show><x xmlns='urn:example:x' a='&gt;'/></presence>",
    b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq  >",
    b"<stream:features/>",
    b"<message><body>caf\xc3\xa9 \xe2\x82\xac</body></message>",
    b"<a/><b></b><c x='/>'/>",
]


def _describe(events: list[object]) -> list[str]:
    return [
        serialize(e.element, parent_ns="") if isinstance(e, Stanza) else type(e).__name__
        for e in events
    ]


def _run(chunks: list[bytes], **limits: int) -> tuple[list[str], str | None, int]:
    parser = XmlStreamParser(**limits)
    events: list[object] = []
    error = None
    parsers = set()
    try:
        for chunk in chunks:
            events.extend(parser.feed(chunk))
            parsers.add(id(parser._expat))
    except StreamParseError as exc:
        events.extend(exc.events)
        error = f"{exc.condition.value}: {exc.text}"
    return _describe(events), error, len(parsers)


@pytest.mark.parametrize("seed", range(40))
def test_recycling_expat_changes_no_event(seed: int) -> None:
    rng = random.Random(seed)
    body = b"".join(rng.choice(STANZAS) for _ in range(60))
    tail = rng.choice([b"", b"</stream:stream>", b"<message><body>unfinished", b"<bad></x>"])
    data = HEADER + body + tail
    reference = _run([data])
    chunks, i = [], 0
    while i < len(data):
        n = rng.choice([1, 2, 3, 7, 40, 200, 1000])
        chunks.append(data[i : i + n])
        i += n
    recycled = _run(chunks, recycle_bytes=rng.randint(1, 400))
    assert recycled[:2] == reference[:2]
    assert recycled[2] > 1  # the parser really was replaced along the way


@pytest.mark.parametrize(
    "chunks",
    [
        [b"<iq><a/></iq", b"><presence/><message><body>x"],  # end tag split before ">"
        [b"<presence/", b"><message><body>x"],  # empty-element stanza split before ">"
        [b"<iq><a/></iq><message><body>x"],  # end tag, then a partial stanza
        [b"<presence/><message><body>x"],  # empty-element stanza, then a partial one
        [b"<presence/>", b"<message><body>x"],  # the slice ends at the boundary
    ],
)
def test_recycling_at_each_kind_of_stanza_end(chunks: list[bytes]) -> None:
    rest = b"</body></message></stream:stream>"
    reference = _run([HEADER, *chunks, rest])
    parser = XmlStreamParser(recycle_bytes=1)
    events = parser.feed(HEADER)
    first = parser._expat
    for chunk in chunks:
        events += parser.feed(chunk)
    assert parser._expat is not first
    events += parser.feed(rest)
    assert (_describe(events), None) == reference[:2]


def test_recycling_keeps_the_transcript_identical(transcript: Transcript) -> None:
    data = HEADER + b"".join(STANZAS) * 5 + b"</stream:stream>"
    assert transcript(data, recycle_bytes=50).events == transcript(data).events


def test_recycling_keeps_errors_and_limits(transcript: Transcript) -> None:
    data = HEADER + b"".join(STANZAS) * 3 + b"<message><body>" + b"x" * 300
    out = transcript(data, max_stanza_bytes=250, recycle_bytes=30)
    assert out.condition is Cond.POLICY_VIOLATION
    assert out.events == transcript(data, max_stanza_bytes=250).events


def test_recycling_and_hibernation_together() -> None:
    parser = XmlStreamParser(recycle_bytes=64)
    parser.feed(HEADER)
    seen = []
    for i in range(50):
        seen += parser.feed(STANZAS[i % len(STANZAS)])
        if i % 3 == 0:
            parser.hibernate()
    expected = _run([HEADER, *(STANZAS[i % len(STANZAS)] for i in range(50))])[0][1:]
    assert _describe(seen) == expected


def test_a_websocket_connection_recycles_too() -> None:
    framed = FramedParser(max_stanza_bytes=1024)
    first = framed._stream._expat
    for i in range(2000):
        element = framed.parse(
            f"<message xmlns='jabber:client' id='{i}'><body>x</body></message>".encode()
        )
        assert element.attrs == {"id": str(i)}
    assert framed._stream._expat is not first


# ---------------------------------------------------------------------------- one stanza's tree


def test_elements_and_attributes_per_stanza_are_bounded(transcript: Transcript) -> None:
    # The stanza itself counts as one node, each child element and attribute as one more.
    ok = b"<message a='1'>" + b"<x/>" * 8 + b"</message>"
    assert transcript(HEADER + ok, max_nodes=10).error is None
    over = b"<message a='1'>" + b"<x/>" * 9 + b"</message>"
    assert transcript(HEADER + over, max_nodes=10).condition is Cond.POLICY_VIOLATION
    over = b"<message>" + b"<x b='' c=''/>" * 3 + b"<y/></message>"
    assert transcript(HEADER + over, max_nodes=10).condition is Cond.POLICY_VIOLATION
    many = b"<message " + b" ".join(b"a%d=''" % i for i in range(10)) + b"/>"
    assert transcript(HEADER + many, max_nodes=10).condition is Cond.POLICY_VIOLATION
    # The budget is per stanza.
    assert transcript(HEADER + ok * 20, max_nodes=10).error is None


def test_default_node_budget_scales_with_the_stanza_limit() -> None:
    assert XmlStreamParser().max_nodes == 262144 // 16
    assert XmlStreamParser(max_stanza_bytes=65536).max_nodes == 4096
    assert XmlStreamParser(max_stanza_bytes=200).max_nodes == 64


def test_a_stanza_of_tiny_elements_cannot_hold_fifty_times_its_size() -> None:
    """A 256 KB stanza of `<a/>` once built a 12 MB tree, held while its end tag was
    awaited: the node budget refuses it."""
    parser = XmlStreamParser()
    parser.feed(HEADER + b"<message>")
    with pytest.raises(StreamParseError) as info:
        for _ in range(64):
            parser.feed(b"<a/>" * 1000)
    assert info.value.condition is Cond.POLICY_VIOLATION
