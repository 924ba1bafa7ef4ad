"""Client-to-server stream negotiation (RFC 6120 §4-§7) as a sans-I/O state machine.

Theory of operation
-------------------
The core takes parsed stream events (stream header, top-level elements, stream
end) and connection facts, and returns actions for its driver (`xmpp/c2s.py`).
Its output is framing-neutral (`OpenStream`, `SendFeatures`, `Send` of one
element, `CloseStream`): the transport's framer (`xmpp/framing.py`) writes them
as a TCP stream, WebSocket messages or BOSH bodies, so every transport gets the
same negotiation.
It never awaits, never reads the clock and never touches storage: when SASL
needs a stored credential the core returns `NeedCredentials` and the driver
calls `credentials()` with the answer; when binding needs the router it returns
`BindRequested` and the driver calls `bound()` or `bind_failed()`.

States (one table, `_ACCEPTS`, says which top-level elements each accepts):

    WAIT_HEADER ──header──▶ OPEN ──<starttls/>──▶ TLS_PENDING ──tls_established()──▶ WAIT_HEADER
                             │ ◀──failure/abort──┐
                             └──<auth/>──▶ SASL ─┴─success──▶ WAIT_HEADER (authenticated)
    WAIT_HEADER (authenticated) ──header──▶ BIND ──bind iq──▶ BINDING ──bound()──▶ ESTABLISHED
                                              └──<resume/>──▶ RESUMING ──resumed()──▶ ESTABLISHED
                                                  ◀──resume_failed()──┘

XEP-0198 stream management: `<resume/>` comes instead of the bind IQ (§5: after
authentication, before binding); the driver looks the session up and answers
`resumed()` or `resume_failed()` (then the client may still bind, §5).  An
`<enable/>` before binding, or `<enable/>`/`<resume/>` before authentication,
gets `<failed><unexpected-request/></failed>` and the stream goes on (§3, §6:
stream management errors are recoverable).  Once ESTABLISHED the driver handles
`<enable/>`, `<r/>` and `<a/>` itself.

A stream restart (RFC 6120 §4.3.3) happens after TLS (§5.4.3.3) and after SASL
success (§6.4.6): the driver resets its parser (`ResetParser`) and the core waits
for a new header.  Once ESTABLISHED the driver stops feeding the core: stanzas
go straight to the router (the hot path has no action objects).

Held failures: brute-force protection answers a wrong guess only after a delay
(`auth/throttle`), so a driver that sets `hold_failures` gets a SASL failure as
one `AuthFailed` carrying the `<failure/>` (`reply`), and the core waits in
FAILURE_PENDING until the driver has sent it and calls `failure_answered()`.
Meanwhile the client may start nothing: §6.4.3 says it waits for the outcome,
and an element now is a policy-violation stream error, as in SASL_WAIT.

Any exception inside the core puts it into FAILED; the driver then closes the
stream with `internal-server-error`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from chatgate.randomness import random_bytes
from chatgate.sasl import b64
from chatgate.sasl.base import (
    Challenge,
    ConnectionFacts,
    CredentialAnswer,
    Failure,
    Mechanism,
    NeedCredentials,
    Step,
    Success,
)
from chatgate.sasl.channel_binding import advertised_types, feature_xml
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import (
    SaslFailureCondition,
    StanzaErrorCondition,
    StreamErrorCondition,
)
from chatgate.xml.element import Element
from chatgate.xml.parser import StreamOpened
from chatgate.xml.serialize import escape_attr, escape_text
from chatgate.xmpp.framing import StreamHeader
from chatgate.xmpp.sm_queue import SM
from chatgate.xmpp.sm_queue import failed as sm_failed


class State(enum.Enum):
    WAIT_HEADER = "wait-header"
    OPEN = "open"  # header exchanged, features sent, not yet authenticated
    TLS_PENDING = "tls-pending"  # <proceed/> sent; the transport is handshaking
    SASL = "sasl"  # a mechanism is running
    SASL_WAIT = "sasl-wait"  # waiting for the driver's credential answer
    FAILURE_PENDING = "failure-pending"  # the driver holds back a SASL failure
    BIND = "bind"  # authenticated stream open, waiting for the bind IQ
    BINDING = "binding"  # waiting for the router
    RESUMING = "resuming"  # XEP-0198 <resume/>: waiting for the driver
    ESTABLISHED = "established"
    CLOSED = "closed"
    FAILED = "failed"


# ---------------------------------------------------------------- actions


# Actions are not frozen: a frozen dataclass's __init__ stores every field through
# object.__setattr__, and a login makes about a dozen actions.  They are built here,
# read once by the driver and dropped; nothing keeps or hashes them.
@dataclass(slots=True)
class OpenStream:
    """Open the server's stream (again, after a restart), in the transport's framing."""

    header: StreamHeader


@dataclass(slots=True)
class SendFeatures:
    """Offer stream features: `children` are the serialized feature elements."""

    children: str


@dataclass(slots=True)
class Send:
    """Write this one top-level element (serialized for a `jabber:client` parent)."""

    text: str


@dataclass(slots=True)
class StartTls:
    """Upgrade the transport to TLS now (after `<proceed/>` is flushed), then call
    `tls_established()`."""


@dataclass(slots=True)
class ResetParser:
    """Discard the parser state: the next bytes start a new stream (RFC 6120 §4.3.3)."""


@dataclass(slots=True)
class Authenticated:
    username: str
    mechanism: str


@dataclass(slots=True)
class AuthFailed:
    """One SASL attempt failed (for throttling and logs); the stream stays open.

    With `C2SNegotiation.hold_failures`, `reply` is the `<failure/>` the driver sends
    (after its brute-force delay) before calling `failure_answered()`; otherwise it
    is empty and a `Send` of the failure came just before."""

    mechanism: str
    condition: SaslFailureCondition
    username: str | None
    reply: str = ""
    #: False when the mechanism said the failure is no credential guess (`Failure.guess`:
    #: right credentials that may not log in yet); brute-force protection skips it
    guess: bool = True


@dataclass(slots=True)
class CredentialsNeeded:
    request: NeedCredentials


@dataclass(slots=True)
class BindRequested:
    iq_id: str
    resource: str | None  # None: the server picks one


@dataclass(slots=True)
class ResumeRequested:
    """XEP-0198 §5: resume the session `previd` instead of binding; `h` is the
    client's count as it sent it (None when absent).  The driver answers with
    `resumed()` or `resume_failed()`."""

    previd: str
    h: str | None


@dataclass(slots=True)
class Established:
    """Binding is done: from now on the driver routes stanzas itself."""

    resource: str


@dataclass(slots=True)
class PreAuthStanza:
    """An IQ allowed before authentication (registration, legacy auth): the driver
    hands it to the module registered for its namespace."""

    element: Element


@dataclass(slots=True)
class CloseStream:
    """Close the stream: with a stream error when `condition` is set (RFC 6120 §4.9)."""

    condition: StreamErrorCondition | None = None
    text: str = ""


Action = (
    OpenStream
    | SendFeatures
    | Send
    | StartTls
    | ResetParser
    | Authenticated
    | AuthFailed
    | CredentialsNeeded
    | BindRequested
    | ResumeRequested
    | Established
    | PreAuthStanza
    | CloseStream
)


# ---------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class NegotiationSettings:
    """What the listener and configuration decide; fixed for one connection."""

    #: the main domain: named in errors before a stream header chose a served one
    domain: str
    starttls_available: bool  # the listener can upgrade (STARTTLS mode, not yet TLS)
    require_tls: bool
    #: computes the offered mechanism names from the connection facts (config order)
    offered_mechanisms: Callable[[ConnectionFacts], Sequence[str]]
    #: builds a mechanism for one attempt
    make_mechanism: Callable[[str, ConnectionFacts], Mechanism]
    #: serialized features offered after authentication besides <bind/> and <session/>
    extra_features: tuple[str, ...] = ()
    #: serialized features offered before authentication (e.g. iq-auth, register)
    pre_auth_features: tuple[str, ...] = ()
    #: IQ payload namespaces a client may use before authenticating
    pre_auth_namespaces: frozenset[str] = frozenset()
    max_auth_failures: int = 3
    lang: str = "en"
    #: every domain served (virtual hosts); empty means `domain` only
    domains: frozenset[str] = frozenset()
    #: per virtual host, the features offered there instead of `pre_auth_features`
    #: (none on an anonymous host; no <register/> where a provider keeps the accounts)
    host_pre_auth_features: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def serves(self, domain: str) -> bool:
        return domain in self.domains if self.domains else domain == self.domain


#: Ways a client may end an exchange on its own (RFC 6120 §6.4.4, §6.5.5, §6.5.8).
_CLIENT_ENDINGS = frozenset(
    {
        SaslFailureCondition.ABORTED,
        SaslFailureCondition.INCORRECT_ENCODING,
        SaslFailureCondition.MALFORMED_REQUEST,
    }
)


def _new_stream_id() -> str:
    return b64.urlsafe_encode(random_bytes(12))


@dataclass(slots=True)
class C2SNegotiation:
    """One client connection's negotiation; see the module docstring."""

    settings: NegotiationSettings
    facts: ConnectionFacts
    state: State = State.WAIT_HEADER
    authenticated_user: str | None = None
    stream_id: str = ""
    header_sent: bool = False
    failures: int = 0
    _mechanism: Mechanism | None = None
    _mechanism_name: str = ""
    _offered: tuple[str, ...] = field(default=())
    _host_chosen: bool = False
    #: the username the current attempt asked credentials for (for counting its end)
    _claimed: str | None = None
    #: set by a driver that sends SASL failures itself, after a delay (`AuthFailed.reply`)
    hold_failures: bool = False
    #: a held failure was the last one allowed: close once it has been answered
    _close_when_answered: bool = False

    # ------------------------------------------------------------ inputs

    def stream_opened(self, event: StreamOpened) -> list[Action]:
        """The peer's stream header (RFC 6120 §4.7)."""
        if self.state is not State.WAIT_HEADER:
            # A second header inside an open stream is not well-formed XML anyway.
            return self._stream_error(StreamErrorCondition.NOT_WELL_FORMED, "unexpected header")
        # §4.7.2: 'to' names the host the client wants; it picks the virtual host the
        # first time, and every restarted stream must name the same one.
        to = event.attrs.get("to", "").rstrip(".").lower()
        served = self.settings.serves(to)
        if served and not self._host_chosen:
            self._host_chosen = True
            if to != self.facts.domain:
                self.facts = replace(self.facts, domain=to)
        actions: list[Action] = [OpenStream(self._response_header(event))]
        # §4.8.1: the stream element must be qualified by the streams namespace.
        if event.ns != ns.STREAMS or event.name != "stream":
            return actions + self._stream_error(StreamErrorCondition.INVALID_NAMESPACE)
        # §4.8.2: the content namespace of a c2s stream is jabber:client.
        if event.default_ns != ns.CLIENT:
            return actions + self._stream_error(
                StreamErrorCondition.INVALID_NAMESPACE,
                "the content namespace must be jabber:client",
            )
        # §4.7.5: version 1.0 or later is required for this protocol.
        if not _supported_version(event.attrs.get("version")):
            return actions + self._stream_error(
                StreamErrorCondition.UNSUPPORTED_VERSION, "version='1.0' is required"
            )
        if not served:
            return actions + self._stream_error(
                StreamErrorCondition.HOST_UNKNOWN, f"{to or 'no host'} is not served here"
            )
        if to != self.facts.domain:
            return actions + self._stream_error(
                StreamErrorCondition.HOST_UNKNOWN, f"this stream belongs to {self.facts.domain}"
            )
        if self.authenticated_user is None:
            self.state = State.OPEN
            actions.append(SendFeatures(self._pre_auth_features()))
        else:
            self.state = State.BIND
            actions.append(SendFeatures(self._post_auth_features()))
        return actions

    def element(self, el: Element) -> list[Action]:
        """A top-level element before the session is established."""
        try:
            return self._element(el)
        except Exception:
            self.state = State.FAILED
            raise

    def tls_established(self, facts: ConnectionFacts) -> list[Action]:
        """The transport finished the TLS handshake (RFC 6120 §5.4.3.3): restart."""
        if self.state is not State.TLS_PENDING:
            raise ValueError("tls_established() without a pending STARTTLS")
        # The transport knows nothing of virtual hosts: keep the one the header chose.
        self.facts = replace(facts, domain=self.facts.domain)
        self.state = State.WAIT_HEADER
        return [ResetParser()]

    def credentials(self, answer: CredentialAnswer) -> list[Action]:
        """The driver's answer to `CredentialsNeeded`."""
        if self.state is not State.SASL_WAIT or self._mechanism is None:
            raise ValueError("credentials() without a pending request")
        self.state = State.SASL
        return self._sasl_step(self._mechanism.resume(answer))

    @property
    def mechanism(self) -> str:
        """The SASL mechanism of the current (or last) attempt; "" before any."""
        return self._mechanism_name

    @property
    def claimed_username(self) -> str | None:
        """The username the current SASL attempt asked credentials for (the driver
        reports an attempt abandoned before its verdict under it)."""
        return self._claimed

    def failure_answered(self) -> list[Action]:
        """The driver sent the held `<failure/>` of `AuthFailed.reply`: the client may
        try again, unless that was its last allowed failure (§6.4.5)."""
        if self.state is not State.FAILURE_PENDING:
            raise ValueError("failure_answered() without a held failure")
        self.state = State.OPEN
        if self._close_when_answered:
            return self._stream_error(
                StreamErrorCondition.POLICY_VIOLATION, "too many failed authentication attempts"
            )
        return []

    def bound(self, resource: str, full_jid: str, iq_id: str) -> list[Action]:
        """The router accepted the bind (RFC 6120 §7.6.1)."""
        if self.state is not State.BINDING:
            raise ValueError("bound() without a pending bind")
        self.state = State.ESTABLISHED
        return [
            Send(
                f"<iq type='result' id=\"{escape_attr(iq_id)}\"><bind xmlns='{ns.BIND}'>"
                f"<jid>{escape_text(full_jid)}</jid></bind></iq>"
            ),
            Established(resource),
        ]

    def resumed(self) -> list[Action]:
        """The driver resumed the session (XEP-0198 §5) and sent `<resumed/>`."""
        if self.state is not State.RESUMING:
            raise ValueError("resumed() without a pending resumption")
        self.state = State.ESTABLISHED
        return []

    def resume_failed(self, failed: str) -> list[Action]:
        """The session could not be resumed: `failed` (the `<failed/>`) goes out and
        the client may bind a resource instead (§5)."""
        if self.state is not State.RESUMING:
            raise ValueError("resume_failed() without a pending resumption")
        self.state = State.BIND
        return [Send(failed)]

    def bind_failed(
        self, iq_id: str, condition: StanzaErrorCondition, text: str = ""
    ) -> list[Action]:
        """The router refused the bind (§7.6.2): the client may try again."""
        if self.state is not State.BINDING:
            raise ValueError("bind_failed() without a pending bind")
        self.state = State.BIND
        return [Send(iq_error(iq_id, condition, text))]

    def legacy_authenticated(self, username: str) -> None:
        """XEP-0078 §3: a jabber:iq:auth set succeeded; the session opens without a
        stream restart or bind IQ (the driver binds the given resource next)."""
        if self.state is not State.OPEN:
            raise ValueError("legacy authentication outside the open, unauthenticated stream")
        self.authenticated_user = username
        self.state = State.BINDING

    def legacy_failed(self) -> None:
        """The legacy login's resource could not be bound (e.g. conflict, XEP-0078 §3.4)."""
        if self.state is not State.BINDING:
            raise ValueError("legacy_failed() without a pending legacy login")
        self.authenticated_user = None
        self.state = State.OPEN

    def legacy_bound(self) -> None:
        if self.state is not State.BINDING:
            raise ValueError("legacy_bound() without a pending legacy login")
        self.state = State.ESTABLISHED

    def stream_closed(self) -> list[Action]:
        """The peer sent `</stream:stream>` (RFC 6120 §4.4)."""
        self.state = State.CLOSED
        return [CloseStream()]

    # ------------------------------------------------------------ internals

    def _element(self, el: Element) -> list[Action]:
        state = self.state
        if state is State.OPEN:
            if el.ns == ns.TLS and el.name == "starttls":
                return self._starttls()
            if el.ns == ns.SASL and el.name == "auth":
                return self._auth(el)
            if el.ns == ns.CLIENT and el.name == "iq" and self._is_pre_auth_iq(el):
                return [PreAuthStanza(el)]
            if el.ns == SM and el.name in ("enable", "resume"):
                # XEP-0198 §3, §5: only an authenticated stream may do either.
                return [Send(sm_failed(StanzaErrorCondition.UNEXPECTED_REQUEST))]
            return self._not_authorized(el)
        if state is State.SASL:
            if el.ns == ns.SASL and el.name == "response":
                assert self._mechanism is not None
                data = _decode_sasl(el.text)
                if data is None:
                    return self._sasl_failure(SaslFailureCondition.INCORRECT_ENCODING)
                return self._sasl_step(self._mechanism.respond(data))
            if el.ns == ns.SASL and el.name == "abort":
                return self._sasl_failure(SaslFailureCondition.ABORTED, count=False)
            return self._not_authorized(el)
        if state is State.BIND:
            if el.ns == ns.CLIENT and el.name == "iq":
                bind = el.find("bind", ns.BIND)
                if bind is not None and el.get("type") == "set":
                    return self._bind(el, bind)
            if el.ns == SM:
                if el.name == "resume":
                    return self._resume(el)
                if el.name == "enable":
                    # XEP-0198 §3: "the client MUST NOT attempt to enable stream
                    # management until after it has completed Resource Binding".
                    return [
                        Send(
                            sm_failed(
                                StanzaErrorCondition.UNEXPECTED_REQUEST,
                                text="bind a resource first",
                            )
                        )
                    ]
            # RFC 6120 §7.1: no stanza is processed before binding.
            return self._stream_error(StreamErrorCondition.NOT_AUTHORIZED, "bind a resource first")
        if state in (
            State.SASL_WAIT,
            State.FAILURE_PENDING,
            State.BINDING,
            State.RESUMING,
            State.TLS_PENDING,
        ):
            # The client did not wait for our answer (§6.4.3, §5.4.3.3).
            return self._stream_error(StreamErrorCondition.POLICY_VIOLATION, "wait for the server")
        return self._stream_error(StreamErrorCondition.NOT_AUTHORIZED)

    def _is_pre_auth_iq(self, el: Element) -> bool:
        return any(
            isinstance(child, Element) and child.ns in self.settings.pre_auth_namespaces
            for child in el.children
        )

    def _not_authorized(self, el: Element) -> list[Action]:
        # RFC 6120 §6.4.1 / §4.9.3.12: stanzas before authentication are refused.
        what = el.name if el.ns == ns.CLIENT else f"{{{el.ns}}}{el.name}"
        return self._stream_error(
            StreamErrorCondition.NOT_AUTHORIZED, f"<{what}/> before authentication"
        )

    def _starttls(self) -> list[Action]:
        if not self.settings.starttls_available or self.facts.tls_active:
            # §5.4.2.2: failure, then the stream is closed.
            return [
                Send(f"<failure xmlns='{ns.TLS}'/>"),
                *self._close_after_failure(),
            ]
        self.state = State.TLS_PENDING
        return [Send(f"<proceed xmlns='{ns.TLS}'/>"), StartTls()]

    def _offered_now(self) -> tuple[str, ...]:
        return tuple(self.settings.offered_mechanisms(self.facts))

    def _tls_missing(self) -> bool:
        return self.settings.require_tls and not self.facts.tls_active

    def _auth(self, el: Element) -> list[Action]:
        name = el.get("mechanism") or ""
        self._mechanism_name = name
        if self._tls_missing():
            # §6.4.5 encryption-required: the mechanism needs a protected stream.
            return self._sasl_failure(SaslFailureCondition.ENCRYPTION_REQUIRED, count=False)
        if name not in self._offered:
            return self._sasl_failure(SaslFailureCondition.INVALID_MECHANISM)
        text = el.text
        if text == "":
            initial: bytes | None = None
        else:
            initial = _decode_sasl(text)
            if initial is None:
                return self._sasl_failure(SaslFailureCondition.INCORRECT_ENCODING)
        self._mechanism = self.settings.make_mechanism(name, self.facts)
        self._claimed = None
        self.state = State.SASL
        return self._sasl_step(self._mechanism.start(initial))

    def _sasl_step(self, step: Step) -> list[Action]:
        if isinstance(step, NeedCredentials):
            self.state = State.SASL_WAIT
            self._claimed = step.username or None
            return [CredentialsNeeded(step)]
        if isinstance(step, Challenge):
            return [Send(f"<challenge xmlns='{ns.SASL}'>{_encode_sasl(step.data)}</challenge>")]
        if isinstance(step, Success):
            self._mechanism = None
            self.authenticated_user = step.username
            self.state = State.WAIT_HEADER
            payload = "" if step.additional_data is None else _encode_sasl(step.additional_data)
            return [
                Send(f"<success xmlns='{ns.SASL}'>{payload}</success>"),
                Authenticated(step.username, self._mechanism_name),
                ResetParser(),
            ]
        assert isinstance(step, Failure)
        return self._sasl_failure(
            step.condition, step.text, username=step.username, guess=step.guess
        )

    def _sasl_failure(
        self,
        condition: SaslFailureCondition,
        text: str = "",
        *,
        count: bool = True,
        username: str | None = None,
        guess: bool = True,
    ) -> list[Action]:
        """§6.4.5: report the failure; after too many, close with policy-violation.
        `count` is for this stream's limit (every failed attempt); `guess` for
        brute-force protection (`AuthFailed.guess`)."""
        if (
            self._mechanism is not None
            and getattr(self._mechanism, "verdict_disclosed", False)
            and condition in _CLIENT_ENDINGS
        ):
            # The client has seen its verdict: ending the exchange some other way
            # (abort, bad base64) is still a failed guess, counted as such.
            self._mechanism = None
            return self._counted_failure(condition, text)
        self._mechanism = None
        self.state = State.OPEN
        body = f"<{condition.value}/>"
        if text:
            body += f"<text xml:lang='{self.settings.lang}'>{escape_text(text)}</text>"
        failure = f"<failure xmlns='{ns.SASL}'>{body}</failure>"
        last = False
        if count:
            self.failures += 1
            last = self.failures >= self.settings.max_auth_failures
        if self.hold_failures:
            self.state = State.FAILURE_PENDING
            self._close_when_answered = last
            return [AuthFailed(self._mechanism_name, condition, username, failure, guess)]
        actions: list[Action] = [
            Send(failure),
            AuthFailed(self._mechanism_name, condition, username, guess=guess),
        ]
        if last:
            actions += self._stream_error(
                StreamErrorCondition.POLICY_VIOLATION, "too many failed authentication attempts"
            )
        return actions

    def _counted_failure(self, condition: SaslFailureCondition, text: str) -> list[Action]:
        """`condition` goes to the client; throttling and the per-stream limit see a
        wrong credential of the claimed user."""
        actions = self._sasl_failure(condition, text, count=True, username=self._claimed)
        return [
            replace(a, condition=SaslFailureCondition.NOT_AUTHORIZED)
            if isinstance(a, AuthFailed)
            else a
            for a in actions
        ]

    def _bind(self, iq: Element, bind: Element) -> list[Action]:
        iq_id = iq.get("id")
        if not iq_id:
            return self._stream_error(StreamErrorCondition.INVALID_XML, "an <iq/> needs an id")
        resource_el = bind.find("resource", ns.BIND)
        resource = resource_el.text.strip() if resource_el is not None else ""
        self.state = State.BINDING
        return [BindRequested(iq_id, resource or None)]

    def _resume(self, el: Element) -> list[Action]:
        previd = el.get("previd")
        if not previd:
            return [Send(sm_failed(StanzaErrorCondition.BAD_REQUEST, text="previd is missing"))]
        self.state = State.RESUMING
        return [ResumeRequested(previd, el.get("h"))]

    def _stream_error(self, condition: StreamErrorCondition, text: str = "") -> list[Action]:
        self.state = State.CLOSED
        return [CloseStream(condition, text)]

    def _close_after_failure(self) -> list[Action]:
        self.state = State.CLOSED
        return [CloseStream()]

    # ------------------------------------------------------------ output

    def _response_header(self, event: StreamOpened) -> StreamHeader:
        self.stream_id = _new_stream_id()
        self.header_sent = True
        host = self.facts.domain if self._host_chosen else self.settings.domain
        return StreamHeader(
            host, self.stream_id, event.attrs.get("from") or None, self.settings.lang
        )

    def error_header(self) -> StreamHeader:
        """RFC 6120 §4.9.1.2: a stream error before our header still opens the stream
        first; this is the header to open it with (and it counts as sent)."""
        self.header_sent = True
        if not self.stream_id:
            self.stream_id = _new_stream_id()
        return StreamHeader(self.settings.domain, self.stream_id, None, self.settings.lang)

    def _pre_auth_features(self) -> str:
        parts = []
        can_starttls = self.settings.starttls_available and not self.facts.tls_active
        if can_starttls:
            required = "<required/>" if self.settings.require_tls else ""
            parts.append(f"<starttls xmlns='{ns.TLS}'>{required}</starttls>")
        # §5.3.1: with TLS mandatory-to-negotiate, offer only STARTTLS until it is done.
        if not (can_starttls and self.settings.require_tls):
            self._offered = () if self._tls_missing() else self._offered_now()
            if self._offered:
                parts.append(f"<mechanisms xmlns='{ns.SASL}'>")
                parts.extend(f"<mechanism>{m}</mechanism>" for m in self._offered)
                parts.append("</mechanisms>")
                # XEP-0440 §2: the channel-binding types this connection supports,
                # exactly when -PLUS is offered (XEP-0474's hash assumes the same).
                if any(m.endswith("-PLUS") for m in self._offered):
                    parts.append(feature_xml(advertised_types(self.facts.channel_bindings)))
            features = self.settings.host_pre_auth_features
            parts.extend(features.get(self.facts.domain, self.settings.pre_auth_features))
        return "".join(parts)

    def _post_auth_features(self) -> str:
        return (
            f"<bind xmlns='{ns.BIND}'/><session xmlns='{ns.SESSION}'><optional/></session>"
            + "".join(self.settings.extra_features)
        )


# ---------------------------------------------------------------- helpers


def _supported_version(version: str | None) -> bool:
    if not version:
        return False
    major, _, _minor = version.partition(".")
    return major.isdigit() and int(major) >= 1


def _decode_sasl(text: str) -> bytes | None:
    """RFC 6120 §6.4.2: base64 payload; a single '=' is an empty payload; None if invalid."""
    text = text.strip()
    if text == "=":
        return b""
    return b64.decode(text)


def _encode_sasl(data: bytes) -> str:
    return b64.encode(data) if data else "="


def iq_error(iq_id: str, condition: StanzaErrorCondition, text: str = "") -> str:
    """A minimal IQ error reply (RFC 6120 §8.3) for the negotiation phase."""
    body = f"<{condition.value} xmlns='{ns.STANZA_ERRORS}'/>"
    if text:
        body += f"<text xmlns='{ns.STANZA_ERRORS}'>{escape_text(text)}</text>"
    return (
        f"<iq type='error' id=\"{escape_attr(iq_id)}\">"
        f"<error type='{condition.default_type}'>{body}</error></iq>"
    )
