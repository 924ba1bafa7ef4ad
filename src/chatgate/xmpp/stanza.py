"""Building stanza replies: error bounces (RFC 6120 §8.3) and IQ results.

Replies are new `Element`s; the original stanza is never mutated except where a
function says so.
"""

from __future__ import annotations

from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaErrorCondition
from chatgate.xml.element import Element


def error_reply(
    stanza: Element,
    condition: StanzaErrorCondition,
    text: str = "",
    *,
    error_type: str | None = None,
    by: str | None = None,
) -> Element:
    """The error stanza answering `stanza` (RFC 6120 §8.3.1): to/from swapped, same id,
    the original payload kept for IQs and messages as §8.3.1 allows."""
    attrs = {"type": "error"}
    sender = stanza.get("from")
    if sender:
        attrs["to"] = sender
    recipient = stanza.get("to")
    if recipient:
        attrs["from"] = recipient
    stanza_id = stanza.get("id")
    if stanza_id is not None:
        attrs["id"] = stanza_id
    reply = Element(stanza.name, ns.CLIENT, attrs)
    if stanza.name != "presence":
        for child in stanza.children:
            if isinstance(child, Element) and child.name != "error":
                reply.append(child)
    error_attrs = {"type": error_type or condition.default_type}
    if by:
        error_attrs["by"] = by
    append_error(reply, condition, error_attrs, text)
    return reply


def append_error(
    reply: Element, condition: StanzaErrorCondition, attrs: dict[str, str], text: str = ""
) -> None:
    """Add the `<error/>` child (RFC 6120 §8.3.2): `attrs` (type, and code or by),
    the condition, and the text when there is one."""
    error = reply.sub("error", ns.CLIENT, attrs)
    error.sub(condition.value, ns.STANZA_ERRORS)
    if text:
        error.sub("text", ns.STANZA_ERRORS, text=text)


def iq_result(iq: Element, payload: Element | None = None) -> Element:
    """The `type='result'` answer to `iq` (RFC 6120 §8.2.3)."""
    attrs = {"type": "result", "id": iq.get("id") or ""}
    sender = iq.get("from")
    if sender:
        attrs["to"] = sender
    recipient = iq.get("to")
    if recipient:
        attrs["from"] = recipient
    reply = Element("iq", ns.CLIENT, attrs)
    if payload is not None:
        reply.append(payload)
    return reply


def payload_of(stanza: Element) -> Element | None:
    """The first child element (an IQ's single payload, RFC 6120 §8.2.3)."""
    for child in stanza.children:
        if isinstance(child, Element):
            return child
    return None
