"""FramedParser and parse_fragment: RFC 7395 WebSocket messages (one complete element
each) and stored XML."""

from __future__ import annotations

import pytest

from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StreamErrorCondition as Cond
from chatgate.xml.framed import FramedParser, parse_fragment
from chatgate.xml.parser import StreamParseError


def refusal(data: bytes, **kwargs: int) -> Cond:
    with pytest.raises(StreamParseError) as info:
        parse_fragment(data, **kwargs)  # type: ignore[arg-type]
    return info.value.condition


def test_open_element_keeps_the_framing_namespace() -> None:
    el = parse_fragment(
        b'<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>'
    )
    assert (el.ns, el.name, el.attrs) == (ns.FRAMING, "open", {"to": "localhost", "version": "1.0"})


def test_stanza_without_xmlns_gets_the_default_namespace() -> None:
    el = parse_fragment(b"<message to='a@b'><body>hi</body></message>")
    assert el.ns == ns.CLIENT
    body = el.find("body")
    assert body is not None and body.text == "hi"


def test_default_namespace_is_a_parameter() -> None:
    assert parse_fragment(b"<vCard/>", ns.VCARD).ns == ns.VCARD
    assert parse_fragment(b"<x/>", "").ns == ""


def test_explicit_namespaces_win() -> None:
    el = parse_fragment(b"<vCard xmlns='vcard-temp'><FN>A</FN></vCard>")
    assert el.ns == ns.VCARD
    assert el.children[0].ns == ns.VCARD  # type: ignore[union-attr]


def test_xml_declaration_and_surrounding_whitespace_are_allowed() -> None:
    el = parse_fragment(b"<?xml version='1.0'?>\n<presence/>\n")
    assert (el.ns, el.name) == (ns.CLIENT, "presence")


def test_two_elements_are_not_well_formed() -> None:
    assert refusal(b"<presence/><presence/>") is Cond.NOT_WELL_FORMED


def test_a_comment_inside_the_wrapper_position_is_restricted_xml() -> None:
    assert refusal(b"<!-- c --><a/>") is Cond.RESTRICTED_XML


def test_no_element_is_not_well_formed() -> None:
    assert refusal(b"") is Cond.NOT_WELL_FORMED
    assert refusal(b"   ") is Cond.NOT_WELL_FORMED


def test_unclosed_element_is_not_well_formed() -> None:
    assert refusal(b"<message><body>hi</body>") is Cond.NOT_WELL_FORMED
    assert refusal(b"<message") is Cond.NOT_WELL_FORMED


def test_incomplete_trailing_markup_is_not_well_formed() -> None:
    assert refusal(b"<a/><b") is Cond.NOT_WELL_FORMED
    assert refusal(b"<a/>\xc3") is Cond.NOT_WELL_FORMED  # half a character


def test_text_around_the_element_is_bad_format() -> None:
    assert refusal(b"hello<a/>") is Cond.BAD_FORMAT
    assert refusal(b"<a/>hello") is Cond.BAD_FORMAT


def test_closing_the_wrapper_early_is_not_well_formed() -> None:
    assert refusal(b"<a/></fragment>") is Cond.NOT_WELL_FORMED
    assert refusal(b"<a/></fragment><b/>") is Cond.NOT_WELL_FORMED


def test_doctype_is_restricted_xml() -> None:
    assert refusal(b"<!DOCTYPE x [<!ENTITY a 'b'>]><a>&a;</a>") is Cond.RESTRICTED_XML


def test_comment_and_entity_are_restricted_xml() -> None:
    assert refusal(b"<a><!-- c --></a>") is Cond.RESTRICTED_XML
    assert refusal(b"<a>&nbsp;</a>") is Cond.RESTRICTED_XML


def test_invalid_utf8_is_unsupported_encoding() -> None:
    assert refusal(b"<a>\xff</a>") is Cond.UNSUPPORTED_ENCODING
    assert refusal(b"<?xml version='1.0' encoding='latin1'?><a/>") is Cond.UNSUPPORTED_ENCODING


def test_unbound_prefix_is_bad_namespace_prefix() -> None:
    assert refusal(b"<x:a/>") is Cond.BAD_NAMESPACE_PREFIX


def test_message_over_the_limit_is_policy_violation() -> None:
    data = b"<message><body>" + b"x" * 100 + b"</body></message>"
    assert refusal(data, max_stanza_bytes=100) is Cond.POLICY_VIOLATION
    assert parse_fragment(data, max_stanza_bytes=len(data)).name == "message"


def test_depth_limit_applies() -> None:
    assert parse_fragment(b"<a><b><c/></b></a>", max_depth=3).name == "a"
    assert refusal(b"<a><b><c><d/></c></b></a>", max_depth=3) is Cond.POLICY_VIOLATION


# ---------------------------------------------------------------------------- one connection


def test_a_connection_parses_message_after_message() -> None:
    # RFC 7395: <open/>, stanzas, <close/>, each its own message.
    ws = FramedParser()
    opened = ws.parse(
        b'<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>'
    )
    assert (opened.ns, opened.name) == (ns.FRAMING, "open")
    for i in range(3):
        msg = ws.parse(f"<message id='{i}'><body>n{i}</body></message>\r\n".encode())
        assert (msg.ns, msg.attrs, msg.find("body").text) == (ns.CLIENT, {"id": str(i)}, f"n{i}")  # type: ignore[union-attr]
    closed = ws.parse(b'<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>')
    assert closed.name == "close"


def test_namespace_declarations_do_not_leak_between_messages() -> None:
    ws = FramedParser()
    ws.parse(b"<message xmlns:x='urn:x'><x:a/></message>")
    with pytest.raises(StreamParseError) as info:
        ws.parse(b"<message><x:a/></message>")
    assert info.value.condition is Cond.BAD_NAMESPACE_PREFIX


def test_a_failed_connection_stays_failed() -> None:
    ws = FramedParser(max_stanza_bytes=50)
    with pytest.raises(StreamParseError) as info:
        ws.parse(b"<message>" + b"x" * 50 + b"</message>")
    assert info.value.condition is Cond.POLICY_VIOLATION
    with pytest.raises(StreamParseError) as again:
        ws.parse(b"<presence/>")
    assert again.value.condition is Cond.POLICY_VIOLATION


def test_a_message_may_lead_with_an_xml_declaration() -> None:
    ws = FramedParser()
    assert ws.parse(b"<?xml version='1.0'?><presence/>").name == "presence"
    assert ws.parse(b"<?xml version='1.0' encoding='UTF-8'?>\n<presence/>").name == "presence"
    with pytest.raises(StreamParseError) as info:
        ws.parse(b"<?xml version='1.0' encoding='UTF-16'?><presence/>")
    assert info.value.condition is Cond.UNSUPPORTED_ENCODING


def test_the_framed_parser_uses_only_the_stream_parsers_public_api() -> None:
    """framed.py reads no private field of another object (issue 10 item 12: it read
    seven of the stream parser's); its own `self._stream` is its business."""
    import ast
    import inspect

    from chatgate.xml import framed

    tree = ast.parse(inspect.getsource(framed))
    private = sorted(
        f"{ast.unparse(node.value)}.{node.attr} (line {node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    )
    assert private == []


def test_a_message_after_a_carriage_return_is_judged_on_its_own() -> None:
    """Expat may hold back a trailing CR (waiting for an LF): whitespace held back is
    no reason to refuse, and the next message still parses."""
    parser = FramedParser()
    assert parser.parse(b"<message/>\r").name == "message"
    assert parser.parse(b"\n<presence/>").name == "presence"
    with pytest.raises(StreamParseError) as info:
        parser.parse(b"<iq/>\r<")
    assert info.value.condition is Cond.NOT_WELL_FORMED
