"""The client connection driver: one per connection, the same for every transport.

It feeds parsed stream events to the negotiation core, carries out the core's
actions (writes, STARTTLS, credential look-ups, binding), and once the session
is established hands stanzas straight to the router.  Stanzas whose handling
must await (storage) are processed strictly in order: while one is pending,
later ones queue behind it (RFC 6120 §10.1 in-order processing).

A transport adapter implements `Transport` and calls `events()`,
`protocol_error()` and `connection_lost()`.  The driver writes the stream through
the transport's `StreamOutput` (`xmpp/framing.py`) and never sees its framing;
what only some transports can do (STARTTLS, hibernating an idle parser) it asks
for through optional capabilities.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Protocol

from chatgate.auth.gate import Attempt
from chatgate.auth.provider import NO_SUCH_KEYS, SCRAM_CAPABILITY, Capability
from chatgate.auth.throttle import Refuse, counts_as_guess
from chatgate.sasl.base import CredentialAnswer, NeedCredentials
from chatgate.sasl.driver import answer_request
from chatgate.storage.errors import StorageUnavailable
from chatgate.storage.outage_log import OutageLog
from chatgate.vocabulary import ns
from chatgate.vocabulary.errors import (
    PeerProtocolError,
    SaslFailureCondition,
    StanzaError,
    StanzaErrorCondition,
    StreamErrorCondition,
)
from chatgate.vocabulary.facts import ConnectionFacts
from chatgate.vocabulary.ns import CSI
from chatgate.xml.element import Element
from chatgate.xml.parser import Stanza, StreamClosed, StreamEvent, StreamOpened
from chatgate.xml.serialize import serialize
from chatgate.xmpp import negotiation as neg
from chatgate.xmpp import sm_driver, sm_stream
from chatgate.xmpp.directory import Claimed
from chatgate.xmpp.framing import StreamError, StreamOutput
from chatgate.xmpp.negotiation import (
    Authenticated,
    AuthFailed,
    BindRequested,
    CloseStream,
    CredentialsNeeded,
    Established,
    OpenStream,
    PreAuthStanza,
    ResetParser,
    ResumeRequested,
    Send,
    SendFeatures,
    StartTls,
)
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.shaper import TokenBucket
from chatgate.xmpp.sm_client_state import ClientStateFilter
from chatgate.xmpp.sm_queue import SM
from chatgate.xmpp.sm_stream import ManagedStream

if TYPE_CHECKING:
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)
#: stanzas that failed because the database is out of reach
_OUTAGE = OutageLog(log, "stanza handling")

_SCRAM_HASH = {capability: hash_name for hash_name, capability in SCRAM_CAPABILITY.items()}

#: Namespaces of the nonzas an established stream may carry (XEP-0198, XEP-0352).
_NONZA_NAMESPACES = frozenset((SM, CSI))

#: The protocol name the login gate logs and counts these logins under.
PROTOCOL = "xmpp"
#: Stanzas queued behind a pending one before the transport stops reading.
_QUEUE_HIGH_WATER = 256
#: Before the session is bound nothing earns a deep queue: stop reading at once.
_PREAUTH_QUEUE_HIGH_WATER = 1
#: Plaintext bytes parsed per loop turn and connection, before and after binding:
#: a client that sent more waits for the next turn, so one busy connection cannot
#: hold the event loop while others wait (the transport slices its reads).
PREAUTH_READ_SLICE = 4096
READ_SLICE = 65_536


class Transport(Protocol):
    """What a connection needs from every transport adapter."""

    name: str  # "tcp", "tls", "bosh", "websocket"
    facts: ConnectionFacts
    #: STARTTLS, where the transport can upgrade in band (plain TCP only)
    tls_upgrade: TlsUpgrade | None
    #: freeing an idle connection's parser, where the transport keeps one per connection
    hibernation: Hibernation | None

    def output(self, loop: asyncio.AbstractEventLoop) -> StreamOutput:
        """The framer the driver writes the stream through (asked for once)."""
        ...

    def close(self) -> None:
        """Close after everything written so far is flushed."""

    def restart_stream(self) -> None:
        """The next input opens a new stream (RFC 6120 §4.3.3): what the client
        sent before the restart is discarded."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class TlsUpgrade(Protocol):
    """A transport that can switch to TLS in band (RFC 6120 §5)."""

    async def start_tls(self) -> ConnectionFacts:
        """Upgrade to TLS and return the new connection facts."""
        ...


class Hibernation(Protocol):
    """A transport whose per-connection parser can be freed while idle."""

    #: reads received so far; the idle sweep compares it between two sweeps
    reads: int

    def hibernate(self) -> bool:
        """Free per-connection parsing state while the connection is idle."""
        ...


class C2SConnection:
    """Drives one client connection from the first byte to the close."""

    __slots__ = (
        "_address",
        "_attempt",
        "_auth_timer",
        "_busy",
        "_close_after_bind",
        "_counted",
        "_ending",
        "_loop",
        "_moved",
        "_paused",
        "_queue",
        "_reads_at_sweep",
        "_refused",
        "_stanza_bucket",
        "_stream_generation",
        "_tasks",
        "closed",
        "connected_at",
        "csi",
        "ctx",
        "login_mechanism",
        "negotiation",
        "output",
        "peer_closed",
        "read_bucket",
        "read_slice",
        "resume_timer",
        "session",
        "sm",
        "transport",
    )

    def __init__(self, ctx: ServerContext, transport: Transport, settings: neg.NegotiationSettings):
        self.ctx = ctx
        self.transport = transport
        self.negotiation = neg.C2SNegotiation(settings, transport.facts)
        self.session: C2SSession | None = None
        self.closed = False
        #: Unix time the connection was accepted, for the admin API's session list
        self.connected_at = time.time()
        #: the mechanism that logged in (SASL, or XEP-0078's), once one has
        self.login_mechanism = ""
        #: the client ended its stream (`</stream:stream>`): it sends nothing more
        self.peer_closed = False
        self._queue: deque[Element] | None = None  # created when a stanza must wait
        self._busy = False
        self._paused = False
        self._stream_generation = 0
        self._reads_at_sweep = -1
        #: the login attempt under way (`auth/gate.py`): entered when a mechanism
        #: asks for credentials (or a legacy login hands its own over), settled once
        self._attempt: Attempt | None = None
        self._tasks: set[asyncio.Task[None]] | None = None
        #: a close of the session being bound that came before its bind was answered
        self._close_after_bind: tuple[C2SSession, StreamErrorCondition | None, str] | None = None
        #: XEP-0198 state, once the client enabled stream management (`sm_stream.py`)
        self.sm: ManagedStream | None = None
        #: XEP-0352: the filter on the write path while the client is inactive
        self.csi: ClientStateFilter | None = None
        #: the stream is being ended on purpose (stream error, `</stream>`): a
        #: stream-managed session is not hibernated then
        self._ending = False
        #: the session moved to a resuming connection: this one ends without it
        self._moved = False
        #: while hibernated (XEP-0198 §5): the timer that ends the session for good
        self.resume_timer: asyncio.TimerHandle | None = None
        loop = self._loop = asyncio.get_running_loop()
        self.output = transport.output(loop)
        self._auth_timer: asyncio.TimerHandle | None = loop.call_later(
            ctx.config.auth.auth_timeout, self._auth_timeout
        )
        ctx.connections.add(self)
        # Until the session is bound: a small byte rate, small read slices and a
        # rate of top-level elements (see docs/security.md).
        limits = ctx.config.limits
        now = loop.time()
        #: bytes read from the peer are charged here (the transport applies it)
        self.read_bucket: TokenBucket | None = (
            TokenBucket(limits.preauth_rate, limits.preauth_burst, now)
            if limits.preauth_rate
            else None
        )
        #: plaintext bytes the transport parses per loop turn
        self.read_slice = PREAUTH_READ_SLICE
        self._stanza_bucket = TokenBucket(
            limits.preauth_stanzas_per_second, limits.preauth_stanza_burst, now
        )
        self._address = transport.facts.remote_address or ""
        self._counted = True
        #: over the per-address limit: refused once the client's header arrives (a
        #: stream error before it would race the client's first write into a reset)
        self._refused = ctx.preauth_gauge.enter(self._address) > (
            limits.max_preauth_connections_per_address
        )

    # ------------------------------------------------------------ transport input

    def events(self, events: Sequence[StreamEvent]) -> None:
        """Parsed events from the transport, in order."""
        generation = self._stream_generation
        for event in events:
            if self.closed or self._stream_generation != generation:
                # A stream restart discards what the old parser produced after it
                # (RFC 6120 §4.3.3): those bytes belonged to the previous stream.
                break
            if type(event) is Stanza:
                self._element(event.element)
            elif type(event) is StreamOpened:
                if self._refused:
                    self._refuse()
                    break
                self._apply(self.negotiation.stream_opened(event))
            elif type(event) is StreamClosed:
                self.peer_closed = True
                self._apply(self.negotiation.stream_closed())

    def _element(self, el: Element) -> None:
        """Every top-level element of the current stream comes here, in order.  While
        an earlier one is pending (storage, a pre-authentication IQ, a rate wait),
        later ones queue behind it (RFC 6120 §10.1) and, past a high-water mark,
        reading pauses: a client's work in flight is one element plus one read."""
        if self._busy:
            queue = self._queue
            if queue is None:
                queue = self._queue = deque()
            queue.append(el)
            high_water = (
                _QUEUE_HIGH_WATER if self.session is not None else _PREAUTH_QUEUE_HIGH_WATER
            )
            if len(queue) >= high_water and not self._paused:
                self._paused = True
                self.transport.pause_reading()
            return
        # `_process`, inlined: this runs for every top-level element.
        if self.session is not None:
            pending = self._stanza(el)
        else:
            wait = self._stanza_bucket.take(1, self._loop.time())
            pending = self._negotiate_later(wait, el) if wait else self._negotiate(el)
        if pending is not None:
            self._busy = True
            self._wait_for(pending, el)

    def _process(self, el: Element) -> Awaitable[None] | None:
        """Handle one element now; return what is left to await, if anything."""
        if self.session is not None:
            return self._stanza(el)
        wait = self._stanza_bucket.take(1, self._loop.time())
        if wait:
            return self._negotiate_later(wait, el)
        return self._negotiate(el)

    async def _negotiate_later(self, wait: float, el: Element) -> None:
        """The pre-authentication element rate was exceeded: this element (and, queued
        behind it, everything after it) waits its turn."""
        await asyncio.sleep(wait)
        if not self.closed:
            pending = self._negotiate(el) if self.session is None else self._stanza(el)
            if pending is not None:
                await pending

    def _negotiate(self, el: Element) -> Awaitable[None] | None:
        """A top-level element before the session: the negotiation core decides.  A
        mechanism (perhaps a plugin's) that raises ends this stream with
        internal-server-error (RFC 6120 §4.9.3.8), not the whole transport callback.
        Returns the pending work of a pre-authentication IQ, if one was handed over."""
        try:
            actions = self.negotiation.element(el)
        except Exception:
            log.exception("negotiation failed for %s", self.transport.facts.remote_address)
            self.close_stream(StreamErrorCondition.INTERNAL_SERVER_ERROR)
            return None
        return self._apply(actions)

    def _resume(self, answer: CredentialAnswer) -> None:
        """Hand the credential answer to the waiting mechanism (as `_negotiate`)."""
        try:
            actions = self.negotiation.credentials(answer)
        except Exception:
            log.exception("negotiation failed for %s", self.transport.facts.remote_address)
            self.close_stream(StreamErrorCondition.INTERNAL_SERVER_ERROR)
            return
        self._apply(actions)

    def protocol_error(self, exc: PeerProtocolError) -> None:
        """The parser refused the input: stream error, then close (RFC 6120 §4.9.1.1)."""
        self.close_stream(exc.condition, exc.text)

    def connection_lost(self) -> None:
        """The transport is gone: tidy up without writing anything."""
        # Called by close_stream() and again by the transport: only the first counts.
        # Pending tasks are not cancelled: they check `closed`, and a message being
        # stored offline must not be cut off half-way.
        timer = self._auth_timer
        if timer is not None:
            timer.cancel()
            self._auth_timer = None
        first = not self.closed
        self.closed = True
        if first and self._attempt is not None:
            self._abandon_attempt()
        self.output.discard()
        self._queue = None
        if self._counted:  # leave the per-address gauge (once)
            self._counted = False
            self.ctx.preauth_gauge.leave(self._address)
        sm = self.sm
        if (
            first
            and sm is not None
            and sm.token is not None
            and not self._ending
            and self.session is not None
        ):
            # XEP-0198 §7: a stream that ends without </stream> is unfinished: the
            # session stays bound (and in `ctx.connections`, so a shutdown ends it)
            # until its client resumes or the timeout passes.
            self._hibernate(sm)
            return
        if self.resume_timer is not None:
            return  # hibernated: its timer, a resumption or `close_stream` ends it
        self.ctx.connections.discard(self)
        if self.session is not None:
            self._end_session(self.session)
        elif first and self.negotiation.authenticated_user is not None and not self._moved:
            # Authenticated but never bound: an anonymous identity made for this
            # connection has no session whose end would delete it.
            self._forget_anonymous(self.negotiation.authenticated_user)

    # ------------------------------------------------------------ established sessions

    def _end_session(self, session: C2SSession) -> None:
        """The session ends for good: out of the directory, `SessionClosed`, and (with
        stream management) what the client never acknowledged handled as undelivered."""
        self.session = None
        sm, self.sm = self.sm, None
        if sm is not None:
            sm.stop()
            if sm.token is not None:
                sm.policy.table.remove(sm.token, session.bare, sm.queue.inbound)
        released = self.ctx.router.directory.release(session)
        if released is not None:
            self.ctx.spawn(released)
        self.ctx.session_closed(session)
        csi, self.csi = self.csi, None
        if sm is not None:
            held = csi.take() if csi is not None else []
            sm_stream.reroute_unacked(self.ctx, session, sm.queue.drain() + held)

    def _stanza(self, el: Element) -> Awaitable[None] | None:
        """A stanza of the established session: every check, then the router.  The
        one path for stanzas handled at once and stanzas that waited in the queue."""
        session = self.session
        assert session is not None
        if el.ns != ns.CLIENT:
            if el.ns in _NONZA_NAMESPACES:
                sm_driver.nonza(self, session, el)
                return None
            self.close_stream(
                StreamErrorCondition.INVALID_NAMESPACE, f"{el.ns!r} is not jabber:client"
            )
            return None
        attrs = el.attrs
        for key in attrs:
            if key[0] == "{":  # namespaced: rare (xml:lang), so checked lazily
                _strip_shadowing_attributes(attrs)
                break
        try:
            return self.ctx.router.route(session, el)
        except StorageUnavailable as exc:
            _OUTAGE.failed(f"a <{el.name}/> of {session.full}", exc)
            self._internal_error(el)
            return None
        except Exception:
            log.exception("routing failed for %s", session.full)
            self._internal_error(el)
            return None

    def _wait_for(self, pending: Awaitable[None], el: Element) -> None:
        """Handle the queue once `el`'s pending work is done.  A future (a bind
        waiting for the cluster's directory) is followed by a callback: no task."""
        if isinstance(pending, asyncio.Future):
            pending.add_done_callback(partial(self._pending_done, el))
        else:
            self._spawn(self._drain(pending, el))

    def _pending_done(self, el: Element, done: asyncio.Future[None]) -> None:
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:
            self._failed(el, error)
        self._next_queued()

    async def _drain(self, pending: Awaitable[None], el: Element) -> None:
        """Await the pending element `el`, then handle the queue in order; a stanza
        whose handling raised gets internal-server-error (RFC 6120 §8.3.3.6)."""
        try:
            await pending
        except Exception as exc:
            self._failed(el, exc)
        self._next_queued()

    def _next_queued(self) -> None:
        """The element in flight is done: handle the queue in order up to the next one
        with pending work, or go idle."""
        queue = self._queue
        while queue and not self.closed:
            el = queue.popleft()
            pending = self._process(el)
            if pending is not None:
                self._wait_for(pending, el)
                return
        self._idle()

    def _idle(self) -> None:
        self._busy = False
        if self._paused and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def _failed(self, el: Element, error: BaseException) -> None:
        if isinstance(error, StorageUnavailable):  # one line per 10 s, not a traceback each
            _OUTAGE.failed(f"a <{el.name}/> of {self.session and self.session.full}", error)
        else:
            log.error("stanza handling failed", exc_info=error)
        self._internal_error(el)

    def _internal_error(self, el: Element) -> None:
        from chatgate.xmpp.stanza import error_reply

        if self.session is not None and el.get("type") != "error":
            reply = error_reply(el, StanzaErrorCondition.INTERNAL_SERVER_ERROR)
            reply.attrs["to"] = self.session.full
            self.session.send(reply)

    # ------------------------------------------------------------ negotiation actions

    def _apply(self, actions: list[neg.Action]) -> Awaitable[None] | None:
        """Carry out the core's actions; return the pending work of a
        pre-authentication IQ (awaited in order by `_element`'s queue)."""
        pending: Awaitable[None] | None = None
        for action in actions:
            if self.closed:
                return pending
            # `type() is`, not `match`: class patterns cost an isinstance() each, and
            # this runs for every action of every login (~20K instructions a login).
            # The classes are module globals (one look-up, not `neg.` and an attribute);
            # `kind = type(action)` once would be cheaper, but mypy narrows only this form.
            if type(action) is Send:
                self.output.element(action.text.encode())
            elif type(action) is OpenStream:
                self.output.header(action.header)
            elif type(action) is SendFeatures:
                self.output.features(action.children)
            elif type(action) is ResetParser:
                self.transport.restart_stream()
                self._stream_generation += 1
                self._queue = None  # what was queued belonged to the old stream
            elif type(action) is CredentialsNeeded:
                self._credentials_needed(action.request)
            elif type(action) is Authenticated:
                self._authenticated(action)
            elif type(action) is BindRequested:
                pending = self._bind(action)
            elif type(action) is ResumeRequested:
                sm_driver.resume(self, action)
            elif type(action) is Established:
                pass
            elif type(action) is StartTls:
                self._spawn(self._start_tls())
            elif type(action) is AuthFailed:
                delay = self._auth_failed(action)
                if action.reply:
                    # Only failures are held (auth/throttle/login.py): the client
                    # waits for its answer, and meanwhile may start nothing.
                    if delay > 0:
                        self._spawn(self._answer_failure(action.reply, delay))
                    else:
                        self.output.element(action.reply.encode())
                        self._apply(self.negotiation.failure_answered())
            elif type(action) is PreAuthStanza:
                pending = self.ctx.pre_auth_stanza(self, action.element)
            elif type(action) is CloseStream:
                self.close_stream(action.condition, action.text)
        return pending

    async def _start_tls(self) -> None:
        self.output.flush()  # <proceed/> must leave before the handshake starts
        upgrade = self.transport.tls_upgrade
        try:
            if upgrade is None:
                raise ConnectionError("this transport cannot start TLS")
            facts = await upgrade.start_tls()
        except Exception as exc:
            log.info("TLS handshake failed from %s: %s", self.transport.facts.remote_address, exc)
            self.closed = True
            self.transport.close()
            return
        self._apply(self.negotiation.tls_established(facts))

    def _credentials_needed(self, request: NeedCredentials) -> None:
        """A mechanism needs a credential: the login gate first (brute-force
        protection), then the provider.  Credentials are evaluated at once and only
        a failure is held back (`_answer_failure`): a right password from an address
        under attack gets in without waiting.  An address whose slots are all taken
        gets temporary-auth-failure without any evaluation.  The common login (SCRAM
        keys in the provider's memory) is answered without a task.
        """
        capability = request.capability
        if capability is Capability.ANONYMOUS:
            self._spawn(self._anonymous(request.username))
            return
        # This driver sends SASL failures itself, after the throttle's hold.
        self.negotiation.hold_failures = True
        gate = self.ctx.login_gate
        mechanism = self.negotiation.mechanism
        address = self.transport.facts.remote_address
        if capability is Capability.CERT_IDENTITY:
            # The TLS handshake proved the identity: nothing to guess, no slot.
            attempt = gate.unthrottled(PROTOCOL, mechanism, request.username, self.domain, address)
        else:
            entered = gate.enter(PROTOCOL, mechanism, request.username, self.domain, address)
            if isinstance(entered, Refuse):
                self._attempt = None
                self._resume(CredentialAnswer(temporary_failure=True))
                return
            attempt = entered
        self._attempt = attempt
        domain = self.negotiation.facts.domain
        cached = self.ctx.hosts[domain].cached_scram_keys
        hash_name = _SCRAM_HASH.get(capability)
        if cached is not None and hash_name is not None:
            keys = cached(request.username, domain, hash_name)
            if keys is NO_SUCH_KEYS:
                self._resume(CredentialAnswer(user_exists=False))
                self._park(attempt)
                return
            if keys is not None:
                self._resume(CredentialAnswer(scram_keys=keys, user_exists=True))
                self._park(attempt)
                return
        self._spawn(self._credentials(request, attempt))

    async def _credentials(self, request: NeedCredentials, attempt: Attempt) -> None:
        domain = self.negotiation.facts.domain
        answer = await answer_request(request, self.ctx.hosts[domain].provider, domain)
        if (
            request.capability is Capability.CERT_IDENTITY
            and not answer.user_exists
            and not answer.temporary_failure
            and self.ctx.config.tls.auto_provision
        ):
            # XEP-0178 with auto-provisioning: a trusted certificate's JID gets
            # an account (no password) so rosters and offline storage work.
            answer = await self.ctx.provision_account(request.username, domain)
        if not self.closed:
            self._resume(answer)
            self._park(attempt)
        elif attempt.reserved:
            # Abandoned while its credentials were evaluated: the client may have
            # read the silence as "wrong", so it counts as a failure, and its slot
            # stays taken for the failure's hold.
            self.ctx.login_gate.failed(
                attempt,
                SaslFailureCondition.NOT_AUTHORIZED.value,
                username=request.username,
                mechanism=f"{request.capability.value} (abandoned)",
            )

    def _park(self, attempt: Attempt) -> None:
        """After the credential answer: an attempt now waiting for the client (SCRAM
        sent its challenge) keeps its throttle slot, but leaving frees it uncounted."""
        if self.negotiation.state is neg.State.SASL:
            self.ctx.login_gate.parked(attempt)

    def _abandon_attempt(self) -> None:
        """The connection is gone (`connection_lost`): a SASL attempt parked waiting for
        the client evaluated nothing, so its slot is freed uncounted; one whose
        credentials are being evaluated is reported by `_credentials` when that ends."""
        attempt = self._attempt
        if attempt is not None and self.ctx.login_gate.client_left(attempt):
            self._attempt = None

    def _auth_failed(self, action: neg.AuthFailed) -> float:
        """Settle the SASL attempt as failed (a failure before any credential was asked
        for has none: it is reported unthrottled); returns how long to hold the answer."""
        gate = self.ctx.login_gate
        attempt = self._attempt
        self._attempt = None
        if attempt is None:
            attempt = gate.unthrottled(
                PROTOCOL,
                action.mechanism,
                action.username,
                self.domain,
                self.transport.facts.remote_address,
            )
        return gate.failed(
            attempt,
            action.condition.value,
            guess=action.guess and counts_as_guess(action.condition),
            username=action.username,
            mechanism=action.mechanism,
        )

    async def _answer_failure(self, reply: str, delay: float) -> None:
        """Send a held SASL failure once its hold has passed (the throttle keeps the
        attempt's slot as long, whether or not the client waits)."""
        await asyncio.sleep(delay)
        if not self.closed:
            self.output.element(reply.encode())
            self._apply(self.negotiation.failure_answered())

    async def _anonymous(self, localpart: str) -> None:
        """RFC 4505 on an anonymous host: within the host's rate limit, the random
        localpart gets an account row for the session's lifetime (rosters and vCards
        hang off it); the anonymous module deletes it when the last session ends."""
        domain = self.negotiation.facts.domain
        host = self.ctx.hosts[domain]
        address = self.transport.facts.remote_address
        now = self._loop.time()
        if host.anonymous_limit is None or not host.anonymous_limit.admit(address, now):
            log.warning("anonymous login refused on %s: rate limit (address %s)", domain, address)
            answer = CredentialAnswer(temporary_failure=True)
        else:
            answer = await self.ctx.provision_account(localpart, domain, "SASL ANONYMOUS")
            answer = replace(answer, verified=not answer.temporary_failure)
            if self.closed:  # the client left while its identity was being made
                self._forget_anonymous(localpart)
        if not self.closed:
            self._resume(answer)

    def _forget_anonymous(self, localpart: str) -> None:
        if self.ctx.is_anonymous(self.domain):
            self.ctx.spawn(self._delete_account(localpart, self.domain))

    async def _delete_account(self, localpart: str, domain: str) -> None:
        await self.ctx.db.accounts.delete_anonymous(domain, localpart)

    def _authenticated(self, action: neg.Authenticated) -> None:
        # The auth timer runs on to the bound session (`_established` stops it): a
        # stream that authenticates and never binds times out too.
        facts = self.transport.facts
        gate = self.ctx.login_gate
        attempt = self._attempt
        self._attempt = None
        if attempt is None:  # ANONYMOUS: no credential was looked up
            attempt = gate.unthrottled(
                PROTOCOL, action.mechanism, action.username, self.domain, facts.remote_address
            )
        # A throwaway identity earns no trust: remembering (address, identity) pairs
        # for it would only push real owners' pairs out of the cache.
        gate.succeeded(attempt, action.username, trust=not self.ctx.is_anonymous(self.domain))
        self.login_mechanism = action.mechanism
        name = self.transport.name
        if name in ("tcp", "tls"):
            where = facts.tls_version or "plain TCP"
        else:  # a web transport: "websocket (TLSv1.3)", "bosh (no TLS)"
            where = f"{name} ({facts.tls_version or 'no TLS'})"
        log.info(
            "%s@%s authenticated with %s over %s from %s",
            action.username,
            self.domain,
            action.mechanism,
            where,
            facts.remote_address or "-",
        )

    def _bind(self, action: neg.BindRequested) -> Awaitable[None] | None:
        """RFC 6120 §7: the bind IQ is answered once the directory has decided; when
        it must ask a shared store, the rest of the stream waits (in order)."""
        username = self.negotiation.authenticated_user
        assert username is not None
        try:
            claimed = self._claim(username, action.resource)
        except StanzaError as exc:
            self._apply(self.negotiation.bind_failed(action.iq_id, exc.condition, exc.text))
            return None
        if isinstance(claimed, tuple):
            session = self._opened(*claimed)
            self._apply(self.negotiation.bound(session.resource, session.full, action.iq_id))
            return None
        answered: asyncio.Future[None] = self._loop.create_future()
        claimed.add_done_callback(partial(self._bind_decided, action.iq_id, answered))
        return answered

    def _bind_decided(
        self, iq_id: str, answered: asyncio.Future[None], claim: asyncio.Future[Claimed]
    ) -> None:
        """The directory decided a bind that had to wait: answer it, then let the
        stream go on (`answered`; an error other than the bind's own goes there)."""
        if claim.cancelled():
            answered.cancel()
            return
        error = claim.exception()
        if error is None:
            session = self._claim_kept(*claim.result())
            if session is not None:
                self._apply(self.negotiation.bound(session.resource, session.full, iq_id))
                self._closed_after_bind()
        elif isinstance(error, StanzaError):
            if not self.closed:
                self._apply(self.negotiation.bind_failed(iq_id, error.condition, error.text))
        else:  # handed on, as `_drain` would see it
            answered.set_exception(error)
            return
        answered.set_result(None)

    def _open_session(
        self, username: str, resource: str | None
    ) -> C2SSession | asyncio.Future[C2SSession | None]:
        """XEP-0078 legacy authentication's bind: the session, or a future of it
        (None: the connection closed meanwhile).  Raises (or the future raises)
        StanzaError, the directory's `ClaimRefused` among them."""
        claimed = self._claim(username, resource)
        if isinstance(claimed, tuple):
            return self._opened(*claimed)
        opened: asyncio.Future[C2SSession | None] = self._loop.create_future()
        claimed.add_done_callback(partial(self._claim_decided, opened))
        return opened

    def _claim(self, username: str, resource: str | None) -> Claimed | asyncio.Future[Claimed]:
        """Ask the directory for `resource` (or a server-chosen one) for `username`:
        decided now, or a future when it must ask a shared store.  Raises (or the
        future raises) StanzaError, the directory's `ClaimRefused` among them."""
        ctx = self.ctx
        if resource is not None:
            try:
                resource = ctx.prepare_resource(resource)
            except ValueError as exc:
                raise StanzaError(StanzaErrorCondition.BAD_REQUEST, str(exc)) from None

        def session_for(res: str) -> C2SSession:
            session = C2SSession(
                username=username,
                domain=self.domain,
                resource=res,
                stream_id=self.negotiation.stream_id,
                write=self.output.element,
                close=self.close_stream,
                transport=self.transport.name,
                tls_active=self.facts.tls_active,
            )
            session.close = partial(self._close_claimed, session)
            return session

        claimed = ctx.router.directory.claim(session_for, resource)
        if isinstance(claimed, (tuple, asyncio.Future)):
            return claimed
        return asyncio.ensure_future(claimed)

    def _claim_decided(
        self, opened: asyncio.Future[C2SSession | None], claim: asyncio.Future[Claimed]
    ) -> None:
        if opened.cancelled():  # the login was abandoned: undo what was claimed
            if not claim.cancelled() and claim.exception() is None:
                self._undo_claim(*claim.result())
            return
        if claim.cancelled():
            opened.cancel()
            return
        error = claim.exception()
        if error is not None:
            opened.set_exception(error)
            return
        opened.set_result(self._claim_kept(*claim.result()))
        self._closed_after_bind()

    def _close_claimed(
        self, session: C2SSession, condition: StreamErrorCondition | None, text: str = ""
    ) -> None:
        """`session`'s `close`.  The directory may close a session it has just
        decided (another node's newer bind replaced it) before this connection has
        answered the bind: the client gets its bind result first, then the stream
        error (RFC 6120 §7.7.2.2), as when the session is replaced later."""
        if self.session is not session and not self.closed:
            self._close_after_bind = (session, condition, text)
            return
        self.close_stream(condition, text)

    def _closed_after_bind(self) -> None:
        """The bind is answered: a close held for its session now (one held for a
        session whose claim failed is dropped)."""
        held = self._close_after_bind
        if held is not None:
            self._close_after_bind = None
            session, condition, text = held
            if session is self.session:
                self.close_stream(condition, text)

    def _claim_kept(self, session: C2SSession, replaced: C2SSession | None) -> C2SSession | None:
        """A claim that had to wait is decided: the session, or None when the client
        left meanwhile (the claim is then undone)."""
        if self.closed:
            self._undo_claim(session, replaced)
            return None
        return self._opened(session, replaced)

    def _undo_claim(self, session: C2SSession, replaced: C2SSession | None) -> None:
        """Nobody waits for `session` any more: released (a session it replaced has
        lost its place all the same)."""
        if replaced is not None:
            replaced.close(StreamErrorCondition.CONFLICT, "replaced by a new session")
        released = self.ctx.router.directory.release(session)
        if released is not None:
            self._spawn(released)

    def _opened(self, session: C2SSession, replaced: C2SSession | None) -> C2SSession:
        if replaced is not None:
            # RFC 6120 §7.7.2.2: the older session gets <conflict/>.
            replaced.close(StreamErrorCondition.CONFLICT, "replaced by a new session")
        self.session = session
        self._established()
        self.ctx.session_bound(session)
        return session

    def _established(self) -> None:
        """The session is bound: the stream leaves the pre-authentication limits for
        the established ones."""
        timer = self._auth_timer
        if timer is not None:
            timer.cancel()
            self._auth_timer = None
        if self._counted:  # leave the per-address gauge (once)
            self._counted = False
            self.ctx.preauth_gauge.leave(self._address)
        limits = self.ctx.config.limits
        self.read_slice = READ_SLICE
        self.read_bucket = (
            TokenBucket(limits.c2s_rate, limits.c2s_burst, self._loop.time())
            if limits.c2s_rate
            else None
        )

    # ------------------------------------------------------------ pre-authentication API
    # What pre-authentication IQ handlers (XEP-0077 registration, XEP-0078 legacy
    # authentication) may use; see `modules.base.PreAuthIqHandler`.

    @property
    def facts(self) -> ConnectionFacts:
        """The transport's facts, with the virtual host the stream header chose."""
        return self.negotiation.facts

    @property
    def domain(self) -> str:
        """The virtual host this connection belongs to (the main domain until the
        stream header names another)."""
        return self.negotiation.facts.domain

    @property
    def stream_id(self) -> str:
        return self.negotiation.stream_id

    @property
    def requires_tls(self) -> bool:
        return self.negotiation.settings.require_tls

    @property
    def sasl_failures(self) -> int:
        return self.negotiation.failures

    @property
    def max_auth_failures(self) -> int:
        return self.negotiation.settings.max_auth_failures

    @property
    def authenticated_user(self) -> str | None:
        return self.negotiation.authenticated_user

    @property
    def legacy_login_open(self) -> bool:
        return self.negotiation.state is neg.State.OPEN

    def send(self, el: Element) -> None:
        self.output.element(serialize(el).encode())

    async def legacy_login(
        self, username: str, resource: str, mechanism: str, attempt: Attempt
    ) -> C2SSession | None:
        """XEP-0078: credentials were checked by the caller through the login gate;
        open the session now (no stream restart, no bind IQ) and settle `attempt` as
        succeeded.  Raises StanzaError (e.g. conflict, 409), leaving `attempt` to
        the caller; None when the connection closed while the session was opened."""
        self.negotiation.legacy_authenticated(username)
        try:
            opened = self._open_session(username, resource)
            session = opened if isinstance(opened, C2SSession) else await opened
        except StanzaError:
            self.negotiation.legacy_failed()
            raise
        if session is None:
            return None
        self.negotiation.legacy_bound()
        self._attempt = attempt
        self._authenticated(neg.Authenticated(username, mechanism))
        return session

    def sweep_idle(self) -> bool:
        """Called every few seconds: a connection that read nothing since the last
        sweep frees its parser (see `XmlStreamParser.hibernate`). True when it did."""
        hibernation = self.transport.hibernation
        if hibernation is None or self.closed:
            return False
        reads = hibernation.reads
        idle = reads == self._reads_at_sweep and self.session is not None
        self._reads_at_sweep = reads
        return idle and hibernation.hibernate()

    # ------------------------------------------------------------ stream management
    # XEP-0198 and XEP-0352 live in `sm_driver.py`; these are the connection's side.

    def count_stanzas(self) -> None:
        """From now on count the stanzas the client sends (XEP-0198 §4): the
        connection becomes a `_ManagedConnection`, whose `_stanza` counts first.  A
        connection without stream management keeps this class's `_stanza`: its hot
        path does not change at all."""
        self.__class__ = _ManagedConnection

    def _hibernate(self, sm: ManagedStream) -> None:
        sm_driver.hibernate(self, sm)

    def _end_hibernated(self) -> None:
        sm_driver.end_hibernated(self)

    def hand_over(self) -> None:
        """`sm_resumption.Resumable`: the session moves to a resuming connection."""
        sm_driver.hand_over(self)

    # ------------------------------------------------------------ closing

    def close_stream(self, condition: StreamErrorCondition | None = None, text: str = "") -> None:
        """End the stream, with a stream error if a condition is given, then close
        the transport."""
        if self.closed:
            if self.resume_timer is not None:
                # A hibernated session (XEP-0198) is ended: replaced by a new
                # binding, its account deleted, the server stopping.
                self._end_hibernated()
            return
        self._ending = True
        if not self.negotiation.header_sent:
            self.output.header(self.negotiation.error_header())
        self.output.end(StreamError(condition, text) if condition else None)
        self.transport.close()
        self.connection_lost()

    def _auth_timeout(self) -> None:
        self._auth_timer = None
        if self.closed or self.session is not None:
            return
        if self.negotiation.authenticated_user is None:
            text = "authentication took too long"
        else:
            text = "no resource was bound in time"
        self.close_stream(StreamErrorCondition.CONNECTION_TIMEOUT, text)

    def _refuse(self) -> None:
        log.warning(
            "refused a stream from %s: more than %d connections without a session",
            self._address or "-",
            self.ctx.config.limits.max_preauth_connections_per_address,
        )
        self.close_stream(
            StreamErrorCondition.POLICY_VIOLATION,
            "too many connections without a session from your address",
        )

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
            if not self._tasks:
                self._tasks = None
        if not task.cancelled() and task.exception() is not None:
            log.error("connection task failed", exc_info=task.exception())
            self.close_stream(StreamErrorCondition.INTERNAL_SERVER_ERROR)


#: Stanza attributes the router stamps or checks; a namespaced attribute with one
#: of these local names (`x:from`) would sit next to the real one in what the
#: recipient gets, and a careless client library might read it instead.
_ADDRESSING = frozenset(("from", "to", "id", "type"))


def _strip_shadowing_attributes(attrs: dict[str, str]) -> None:
    """Drop namespaced attributes that shadow stanza addressing (`{uri}from` ...)."""
    for key in [k for k in attrs if k[0] == "{" and k.rpartition("}")[2] in _ADDRESSING]:
        del attrs[key]


class _ManagedConnection(C2SConnection):
    """A connection whose client enabled stream management (see `count_stanzas`)."""

    __slots__ = ()

    def _stanza(self, el: Element) -> Awaitable[None] | None:
        if el.ns == ns.CLIENT:
            sm = self.sm
            if sm is not None:
                sm.queue.handled()
        return C2SConnection._stanza(self, el)
