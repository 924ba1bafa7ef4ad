"""The component stream (XEP-0114): a sans-I/O core, parsed stream events in, actions out.

    HEADER --(<stream:stream to=DOMAIN xmlns='jabber:component:accept'>)--> HANDSHAKE
    HANDSHAKE --(<handshake>digest</handshake>)--> VERIFYING
    VERIFYING --(the adapter claimed the domain: `established()`)--> ESTABLISHED
    any state --(refusal, </stream:stream>)--> CLOSED

A wrong handshake is `Refuse`d: the adapter answers `not-authorized` after the failure
delay.  A right one is `Authenticate`d: the adapter claims the domain (one connection
per component, `locator.py`) and calls `established()`, or closes with `conflict`.

Once established, every top-level element must be a message, presence or IQ in the
component namespace; it is moved into `jabber:client` (what the router and modules
speak) and checked as Prosody's mod_component does:

- a 'from' outside the component's domain closes the stream with `invalid-from`
  (RFC 6120 §4.9.3.9); a missing 'from' becomes the component's domain (COMPAT:
  Prosody and ejabberd accept it so);
- a missing 'to' is answered with `bad-request` (a malformed one with
  `jid-malformed`), except on errors and results, which are never answered.

The core never reads the clock or the network; the adapter owns timers and delays.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from chatgate.components.handshake import handshake_matches
from chatgate.jid import JID, InvalidJID
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import StanzaErrorCondition, StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.parser import Stanza, StreamClosed, StreamEvent, StreamOpened
from chatgate.xmpp.stanza import error_reply

#: XEP-0114's stream content namespace
COMPONENT = "jabber:component:accept"
_STANZAS = frozenset(("message", "presence", "iq"))


class State(enum.Enum):
    HEADER = "header"
    HANDSHAKE = "handshake"
    VERIFYING = "verifying"
    ESTABLISHED = "established"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class OpenStream:
    """Send the server's stream header, `from` the component's domain."""

    domain: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    """The handshake proved the secret: claim `domain`, then `established()`."""

    domain: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """The handshake was wrong: close with `not-authorized` (after the failure delay)."""

    domain: str


@dataclass(frozen=True, slots=True)
class Close:
    """End the stream, with a stream error when `condition` is set."""

    condition: StreamErrorCondition | None
    text: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    """A stanza from the component, in `jabber:client`, with a 'from' on its domain
    and a well-formed 'to'."""

    stanza: Element
    to: JID


@dataclass(frozen=True, slots=True)
class Reply:
    """A stanza error for the component itself."""

    stanza: Element


Action = OpenStream | Authenticate | Refuse | Close | Route | Reply


class ComponentStream:
    """One component connection's protocol state."""

    __slots__ = ("_secrets", "domain", "state", "stream_id")

    def __init__(self, secrets: Mapping[str, str], stream_id: str) -> None:
        self._secrets = secrets
        self.stream_id = stream_id
        self.state = State.HEADER
        #: the component domain the header named (known ones only)
        self.domain: str | None = None

    def receive(self, event: StreamEvent) -> list[Action]:
        """Handle one parsed stream event."""
        if self.state is State.CLOSED:
            return []
        if isinstance(event, StreamClosed):
            return self._close(None)
        if isinstance(event, StreamOpened):
            if self.state is not State.HEADER:
                return self._close(StreamErrorCondition.INVALID_XML, "a second stream header")
            return self._header(event)
        if self.state is State.HANDSHAKE:
            return self._handshake(event)
        if self.state is State.ESTABLISHED:
            return self._stanza(event.element)
        # VERIFYING: the adapter does not read until it has decided.
        return self._close(StreamErrorCondition.NOT_AUTHORIZED, "wait for the handshake's answer")

    def established(self) -> None:
        """The adapter claimed the domain: stanzas flow from now on."""
        if self.state is State.VERIFYING:
            self.state = State.ESTABLISHED

    def fail(self) -> None:
        """The adapter closed the stream for a reason of its own."""
        self.state = State.CLOSED

    # ------------------------------------------------------------ states

    def _header(self, event: StreamOpened) -> list[Action]:
        if event.name != "stream" or event.ns != ns.STREAMS:
            return self._close(StreamErrorCondition.INVALID_NAMESPACE, "not an XMPP stream")
        if event.default_ns != COMPONENT:
            return self._close(
                StreamErrorCondition.INVALID_NAMESPACE,
                f"a component stream's namespace is {COMPONENT}",
            )
        domain = event.attrs.get("to", "")
        if domain not in self._secrets:
            return self._close(
                StreamErrorCondition.HOST_UNKNOWN, "no component is configured for that domain"
            )
        self.domain = domain
        self.state = State.HANDSHAKE
        return [OpenStream(domain)]

    def _handshake(self, event: Stanza) -> list[Action]:
        el = event.element
        assert self.domain is not None
        if el.name != "handshake" or el.ns != COMPONENT:
            return self._close(StreamErrorCondition.NOT_AUTHORIZED, "the handshake comes first")
        self.state = State.VERIFYING
        if handshake_matches(self.stream_id, self._secrets[self.domain], el.text or ""):
            return [Authenticate(self.domain)]
        self.state = State.CLOSED
        return [Refuse(self.domain)]

    def _stanza(self, el: Element) -> list[Action]:
        assert self.domain is not None
        if el.name not in _STANZAS or el.ns != COMPONENT:
            return self._close(
                StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, f"<{el.name}/> is not a stanza"
            )
        adopt(el)
        sender = el.attrs.get("from")
        if sender is None:
            el.attrs["from"] = self.domain  # COMPAT: as Prosody and ejabberd
        else:
            try:
                domain = JID.parse(sender).domain
            except InvalidJID:
                domain = ""
            if domain != self.domain:
                return self._close(
                    StreamErrorCondition.INVALID_FROM,
                    f"a stanza from {self.domain} must be from a JID on {self.domain}",
                )
        stype = el.attrs.get("type")
        answerable = stype not in ("error", "result")
        to_text = el.attrs.get("to")
        if to_text is None:
            if not answerable:
                return []
            text = "a component's stanzas need a 'to'"
            return [Reply(error_reply(el, StanzaErrorCondition.BAD_REQUEST, text))]
        try:
            to = JID.parse(to_text)
        except InvalidJID as exc:
            if not answerable:
                return []
            return [Reply(error_reply(el, StanzaErrorCondition.JID_MALFORMED, str(exc)))]
        return [Route(el, to)]

    def _close(self, condition: StreamErrorCondition | None, text: str = "") -> list[Action]:
        self.state = State.CLOSED
        return [Close(condition, text)]


def adopt(el: Element) -> None:
    """Move `el` and every descendant in the component namespace into `jabber:client`
    (the namespace the router and the modules speak, RFC 6120 §4.8.3)."""
    stack = [el]
    while stack:
        node = stack.pop()
        if node.ns == COMPONENT:
            node.ns = ns.CLIENT
        stack.extend(child for child in node.children if isinstance(child, Element))
