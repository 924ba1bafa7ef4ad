"""serialize(), stream_header(): namespaces, escaping, and round trips through the parser."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.vocabulary import ns
from chatgate.xml.element import LANG, Element
from chatgate.xml.framed import parse_fragment
from chatgate.xml.parser import StreamOpened, XmlStreamParser
from chatgate.xml.serialize import escape_attr, escape_text, serialize, stream_footer, stream_header


def tree(el: Element) -> tuple[object, ...]:
    return (el.ns, el.name, el.attrs, [c if isinstance(c, str) else tree(c) for c in el.children])


def round_trip(el: Element, parent_ns: str = ns.CLIENT) -> Element:
    return parse_fragment(serialize(el, parent_ns).encode(), parent_ns)


# ---------------------------------------------------------------------------- namespaces


def test_children_in_the_same_namespace_get_no_xmlns() -> None:
    msg = Element("message", ns.CLIENT, {"to": "a@b"})
    msg.sub("body", text="hi")
    assert serialize(msg) == '<message to="a@b"><body>hi</body></message>'


def test_child_in_another_namespace_gets_xmlns_and_its_children_inherit() -> None:
    iq = Element("iq", ns.CLIENT, {"type": "result", "id": "1"})
    query = iq.sub("query", ns.ROSTER)
    query.sub("item", attrs={"jid": "a@b"}).sub("group", text="Friends")
    iq.sub("x", ns.CLIENT)
    assert serialize(iq) == (
        '<iq type="result" id="1"><query xmlns="jabber:iq:roster">'
        '<item jid="a@b"><group>Friends</group></item></query><x/></iq>'
    )


def test_child_in_no_namespace_undeclares_the_default() -> None:
    el = Element("a", "urn:a")
    el.sub("b", "")
    assert serialize(el, "") == '<a xmlns="urn:a"><b xmlns=""/></a>'
    assert tree(round_trip(el, "")) == tree(el)


def test_parent_ns_decides_the_top_declaration() -> None:
    card = Element("vCard", ns.VCARD)
    assert serialize(card) == '<vCard xmlns="vcard-temp"/>'
    assert serialize(card, ns.VCARD) == "<vCard/>"
    assert serialize(Element("presence", ns.CLIENT)) == "<presence/>"
    assert serialize(Element("presence", ns.CLIENT), "") == '<presence xmlns="jabber:client"/>'


def test_xml_lang_is_written_with_the_xml_prefix() -> None:
    msg = Element("message", ns.CLIENT, {LANG: "en"})
    assert serialize(msg) == '<message xml:lang="en"/>'
    assert round_trip(msg).attrs == {LANG: "en"}


def test_other_namespaced_attributes_get_declared_prefixes() -> None:
    el = Element("x", ns.CLIENT, {"{urn:a}one": "1", "{urn:b}two": "2", "{urn:a}three": "3"})
    text = serialize(el)
    assert text == (
        '<x xmlns:ns0="urn:a" ns0:one="1" xmlns:ns1="urn:b" ns1:two="2" ns0:three="3"/>'
    )
    assert tree(round_trip(el)) == tree(el)


# ---------------------------------------------------------------------------- escaping


def test_text_is_escaped() -> None:
    el = Element("body", ns.CLIENT, children=["a & b < c > d ]]> \"q\" 'q' \r\n"])
    assert serialize(el) == ("<body>a &amp; b &lt; c &gt; d ]]&gt; \"q\" 'q' &#13;\n</body>")
    assert tree(round_trip(el)) == tree(el)


def test_attribute_values_are_escaped_and_survive_normalisation() -> None:
    value = "a&b<c>d\"e'f\tg\nh\ri"
    el = Element("m", ns.CLIENT, {"v": value})
    assert serialize(el) == '<m v="a&amp;b&lt;c&gt;d&quot;e&apos;f&#9;g&#10;h&#13;i"/>'
    assert serialize(Element("m", ns.CLIENT, {"v": "it's"})) == '<m v="it\'s"/>'
    assert round_trip(el).attrs == {"v": value}


def test_escape_attr_is_safe_in_either_quote_style() -> None:
    assert escape_attr("a'b\"c") == "a&apos;b&quot;c"


def test_escape_helpers_leave_clean_strings_alone() -> None:
    clean = "user2@localhost/res"
    assert escape_text(clean) is clean
    assert escape_attr(clean) is clean


def test_empty_elements_self_close_and_empty_text_does_not() -> None:
    assert serialize(Element("a", ns.CLIENT)) == "<a/>"
    assert serialize(Element("a", ns.CLIENT, children=[""])) == "<a></a>"


def test_mixed_content_keeps_its_order() -> None:
    el = Element(
        "p", ns.CLIENT, children=["one ", Element("b", ns.CLIENT, children=["two"]), " three"]
    )
    assert serialize(el) == "<p>one <b>two</b> three</p>"
    assert tree(round_trip(el)) == tree(el)


# ---------------------------------------------------------------------------- stream header


def test_stream_header_is_a_valid_response_header() -> None:
    header = stream_header(from_="localhost", id_="abc", to="user@localhost")
    assert header == (
        "<?xml version='1.0'?><stream:stream xmlns=\"jabber:client\" "
        'xmlns:stream="http://etherx.jabber.org/streams" id="abc" from="localhost" '
        'to="user@localhost" version="1.0" xml:lang="en">'
    )
    (opened,) = XmlStreamParser().feed(header.encode())
    assert opened == StreamOpened(
        "stream",
        ns.STREAMS,
        {"id": "abc", "from": "localhost", "to": "user@localhost", "version": "1.0", LANG: "en"},
        ns.CLIENT,
        {"stream": ns.STREAMS},
    )


def test_stream_header_omits_and_escapes() -> None:
    header = stream_header(from_="a'b\"c", id_="<&>", version=None, lang=None, content_ns=ns.SERVER)
    assert ' to="' not in header and ' version="' not in header and "xml:lang" not in header
    (opened,) = XmlStreamParser().feed(header.encode())
    assert isinstance(opened, StreamOpened)
    assert opened.attrs == {"from": "a'b\"c", "id": "<&>"}
    assert opened.default_ns == ns.SERVER


def test_stream_footer_closes_the_stream() -> None:
    parser = XmlStreamParser()
    parser.feed(stream_header(from_="localhost", id_="1").encode())
    events = parser.feed(stream_footer().encode())
    assert len(events) == 1 and not parser.is_open


# ---------------------------------------------------------------------------- property


_XML_CHARS = st.characters(
    codec="utf-8",
    exclude_categories=("Cs",),
    exclude_characters="\ufffe\uffff",
).filter(lambda c: c in "\t\n\r" or c >= " ")
_NAMES = st.sampled_from(["message", "body", "x", "item", "a-b", "n.1", "\u00e9l\u00e9ment"])
_NAMESPACES = st.sampled_from([ns.CLIENT, "urn:a", "urn:b", "", "http://x/?a=1&b=<2>"])
_ATTR_NAMES = st.sampled_from(["to", "id", "type", LANG, "{urn:a}x", "{urn:b}y"])
_TEXT = st.text(_XML_CHARS, min_size=1, max_size=20)


def _elements() -> st.SearchStrategy[Element]:
    def build(children: st.SearchStrategy[list[Element | str]]) -> st.SearchStrategy[Element]:
        return st.builds(
            Element,
            _NAMES,
            _NAMESPACES,
            st.dictionaries(_ATTR_NAMES, st.text(_XML_CHARS, max_size=12), max_size=4),
            children,
        )

    leaf = build(st.lists(_TEXT, max_size=1))
    return st.recursive(
        leaf,
        lambda inner: build(st.lists(st.one_of(inner, _TEXT), max_size=4)),
        max_leaves=12,
    )


def _merged(el: Element) -> tuple[object, ...]:
    """The tree a parser can give back: adjacent text merged, no empty text."""
    children: list[object] = []
    for child in el.children:
        if isinstance(child, str):
            if not child:
                continue
            if children and isinstance(children[-1], str):
                children[-1] += child
                continue
            children.append(child)
        else:
            children.append(_merged(child))
    return (el.ns, el.name, el.attrs, children)


@settings(max_examples=300, deadline=None)
@given(_elements(), st.sampled_from([ns.CLIENT, "", "urn:a"]))
def test_serialize_then_parse_gives_the_same_tree(el: Element, parent_ns: str) -> None:
    assert _merged(round_trip(el, parent_ns)) == _merged(el)
