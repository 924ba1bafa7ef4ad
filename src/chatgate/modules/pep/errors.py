"""XEP-0060 errors: an RFC 6120 condition plus, often, a pubsub#errors element
(§7.1.3, §6.5.9): `PubsubError` carries both, and `error_iq` writes them."""

from __future__ import annotations

from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.serialize import serialize
from chatgate.xmpp.stanza import error_reply

PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
#: requests larger than this (serialized) are not echoed in their error
ECHO_LIMIT = 4096


class PubsubError(StanzaError):
    """A stanza error with XEP-0060's application condition (`app`, e.g.
    "precondition-not-met") and, for `unsupported`, the feature it names."""

    def __init__(
        self,
        condition: StanzaErrorCondition,
        app: str | None = None,
        text: str = "",
        *,
        feature: str | None = None,
    ) -> None:
        super().__init__(condition, text)
        self.app = app
        self.feature = feature


def error_iq(iq: Element, to: str, exc: StanzaError) -> Element:
    """The error answering `iq`, addressed to `to`, with the pubsub#errors child
    when `exc` has one (RFC 6120 §8.3.2: application conditions follow the defined one)."""
    reply = error_reply(iq, exc.condition, exc.text, error_type=exc.error_type)
    reply.attrs["to"] = to
    # The request comes back (§8.3.1 allows it) unless it is large: a refused
    # 200 kB item is not worth sending back.
    if len(reply.children) > 1 and len(serialize(iq)) > ECHO_LIMIT:
        reply.children = [c for c in reply.children if isinstance(c, Element) and c.name == "error"]
    if isinstance(exc, PubsubError) and exc.app:
        error = reply.find("error", ns.CLIENT)
        assert error is not None
        attrs = {"feature": exc.feature} if exc.feature else None
        error.append(Element(exc.app, PUBSUB_ERRORS, attrs))
    return reply
