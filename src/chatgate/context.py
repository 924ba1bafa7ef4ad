"""The server context: what modules and connections share (config, storage, router, hooks).

It also applies module registrations (IQ handlers, disco features, stream
features, hook subscriptions) and removes them when a module stops, so module
code never writes its own teardown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol, TypeVar

from precis_i18n import get_profile
from pydantic import BaseModel

from chatgate.auth.gate import LoginGate
from chatgate.auth.throttle import (
    AuthThrottle,
    LoginThrottle,
    RegistrationLimiter,
    RegistrationThrottle,
)
from chatgate.config import section
from chatgate.hooks import Hooks
from chatgate.jid import JID
from chatgate.modules.base import (
    DiscoFeature,
    IqHandler,
    Module,
    ModuleRecord,
    OnEvent,
    OnStart,
    OnStop,
    PreAuthConnection,
    PreAuthIqHandler,
    Registration,
    ServiceDomain,
    Stage,
    StreamFeature,
)
from chatgate.peers import LocalPeers, Peers
from chatgate.sasl.base import CredentialAnswer
from chatgate.storage.errors import AccountExists
from chatgate.vhost import VirtualHost
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.admission import ConnectionGauge, LocalConnectionGauge
from chatgate.xmpp.directory import LocalSessionDirectory, SessionDirectory
from chatgate.xmpp.events import SessionBound, SessionClosed
from chatgate.xmpp.router import Router
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import error_reply, payload_of

if TYPE_CHECKING:
    from chatgate.auth.provider import CredentialProvider
    from chatgate.cluster.node import ClusterNode
    from chatgate.config import Config
    from chatgate.storage.database import Database
    from chatgate.streams.service import StreamService
    from chatgate.vocabulary.errors import StreamErrorCondition

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
_resourceprep = get_profile("OpaqueString")


class ClientConnection(Protocol):
    """What the server keeps of every client connection (`xmpp/c2s.py`'s driver):
    enough to sweep idle parsers and to close everything at shutdown."""

    @property
    def closed(self) -> bool: ...

    def sweep_idle(self) -> bool: ...

    def close_stream(
        self, condition: StreamErrorCondition | None = None, text: str = ""
    ) -> None: ...


class ServerContext:
    def __init__(
        self,
        config: Config,
        db: Database,
        provider: CredentialProvider,
        hosts: dict[str, VirtualHost] | None = None,
        directory: SessionDirectory | None = None,
    ) -> None:
        self.config = config
        #: the main domain (`[server] domain`); `hosts` has every served one
        self.domain = config.server.domain
        self.db = db
        #: the main domain's credential provider
        self.provider = provider
        if hosts is None:
            cached = getattr(provider, "cached_scram_keys", None)
            main = VirtualHost(self.domain, config.host(self.domain), provider, cached, True)
            hosts = {self.domain: main}
        self.hosts = hosts
        self.hooks = Hooks()
        if directory is None:  # this process's sessions only (no cluster layer)
            session = config.session
            directory = LocalSessionDirectory(session.resource_conflict, session.max_resources)
        #: the only way to deliver; `router.directory` holds the sessions
        self.router = Router(frozenset(hosts), self.hooks, self.account_exists, directory)
        self.router.iq_dispatch = self.dispatch_iq
        self.connections: set[ClientConnection] = set()
        #: connections not yet bound, per client address (`xmpp/admission.py`)
        self.preauth_gauge: ConnectionGauge = LocalConnectionGauge()
        self.iq_handlers: dict[tuple[str, str], IqHandler] = {}
        self.pre_auth_handlers: dict[tuple[str, str], PreAuthIqHandler] = {}
        self.disco_features: list[DiscoFeature] = []
        self.stream_features: list[StreamFeature] = []
        #: services on domains of their own (MUC, uploads), listed in disco#items
        self.services: list[ServiceDomain] = []
        self._stages: list[Stage] = []
        self.modules: dict[str, ModuleRecord] = {}
        throttle = config.auth.throttle
        #: brute-force protection (in-process; a shared store may implement the protocol)
        self.auth_throttle: LoginThrottle = AuthThrottle(
            throttle, attempt_ttl=config.auth.auth_timeout
        )
        #: every login, whatever its protocol, is entered, settled, logged and counted here
        self.login_gate = LoginGate(self.auth_throttle, mechanisms=_configured_mechanisms(config))
        #: the stream authority (`[streams] enabled`), opened by the server at start
        self.streams: StreamService | None = None
        #: this node of a cluster (`[cluster] enabled`), set by `cluster.wiring.join_cluster`
        self.cluster: ClusterNode | None = None
        #: the other nodes, as features that span nodes see them (`chatgate.peers`);
        #: `join_cluster` replaces this one-process stand-in
        self.peers: Peers = LocalPeers()
        self.registration_throttle: RegistrationLimiter = RegistrationThrottle(throttle)
        self._background: set[asyncio.Task[None]] = set()
        self._on_start: list[OnStart] = []
        self._on_stop: list[OnStop] = []

    # ------------------------------------------------------------ hosts

    def host(self, domain: str) -> VirtualHost:
        """The virtual host serving `domain` (KeyError when it is not served)."""
        return self.hosts[domain]

    def is_anonymous(self, domain: str) -> bool:
        host = self.hosts.get(domain)
        return host is not None and host.anonymous

    async def account_exists(self, local: str, domain: str) -> bool:
        """Whether `local@domain` is an account here.  On an anonymous host an identity
        exists exactly while one of its sessions is bound (RFC 4505: nothing outlives it)."""
        host = self.hosts.get(domain)
        if host is None:
            return False
        if host.anonymous:
            bound = self.router.directory.bound_anywhere(f"{local}@{domain}")
            return bound if isinstance(bound, bool) else await bound
        return await self.db.accounts.exists(local, domain)

    # ------------------------------------------------------------ modules

    def load(self, module: Module) -> None:
        missing = [d for d in module.depends if d not in self.modules]
        if missing:
            raise ValueError(f"module {module.name} needs {', '.join(missing)} loaded first")
        record = ModuleRecord(module)
        for registration in module.setup(self):
            self._apply(registration)
            record.registrations.append(registration)
        self.modules[module.name] = record

    def options(self, name: str, model: type[M]) -> M:
        """The validated `[modules.NAME]` options of a module (ConfigError when invalid)."""
        return section(self.config, name, model)

    def unload(self, name: str) -> None:
        record = self.modules.pop(name)
        for registration in reversed(record.registrations):
            self._remove(registration)

    def _apply(self, reg: Registration) -> None:
        if isinstance(reg, IqHandler):
            self.iq_handlers[(reg.namespace, reg.type)] = reg
        elif isinstance(reg, PreAuthIqHandler):
            self.pre_auth_handlers[(reg.namespace, reg.type)] = reg
        elif isinstance(reg, DiscoFeature):
            self.disco_features.append(reg)
        elif isinstance(reg, StreamFeature):
            self.stream_features.append(reg)
        elif isinstance(reg, OnEvent):
            self.hooks.add(reg.event, reg.handler, reg.priority)
        elif isinstance(reg, OnStart):
            self._on_start.append(reg)
        elif isinstance(reg, OnStop):
            self._on_stop.append(reg)
        elif isinstance(reg, ServiceDomain):
            self.services.append(reg)
            self.router.services[reg.domain] = reg.handler
        elif isinstance(reg, Stage):
            self._stages.append(reg)
            self._set_stages()

    async def start_modules(self) -> None:
        """Run the modules' `OnStart` work, in load order; the server calls this once,
        after loading them and before its listeners open."""
        pending, self._on_start = self._on_start, []
        for registration in pending:
            await registration.run()

    async def stop_modules(self) -> None:
        """Run the modules' `OnStop` work once, in reverse load order, each bounded by
        its timeout; a failure or a timeout is logged and the next one runs."""
        pending, self._on_stop = self._on_stop, []
        for registration in reversed(pending):
            try:
                await asyncio.wait_for(registration.run(), registration.timeout)
            except TimeoutError:
                log.warning("a module's stop work did not finish in %s s", registration.timeout)
            except Exception:
                log.exception("a module's stop work failed")

    def _remove(self, reg: Registration) -> None:
        if isinstance(reg, IqHandler):
            self.iq_handlers.pop((reg.namespace, reg.type), None)
        elif isinstance(reg, PreAuthIqHandler):
            self.pre_auth_handlers.pop((reg.namespace, reg.type), None)
        elif isinstance(reg, DiscoFeature):
            self.disco_features.remove(reg)
        elif isinstance(reg, StreamFeature):
            self.stream_features.remove(reg)
        elif isinstance(reg, OnEvent):
            for sub in list(self.hooks._handlers.get(reg.event, ())):
                if sub.handler is reg.handler:
                    self.hooks.remove(sub)
        elif isinstance(reg, OnStart) and reg in self._on_start:
            self._on_start.remove(reg)
        elif isinstance(reg, OnStop) and reg in self._on_stop:
            self._on_stop.remove(reg)
        elif isinstance(reg, ServiceDomain):
            self.services.remove(reg)
            self.router.services.pop(reg.domain, None)
        elif isinstance(reg, Stage):
            self._stages.remove(reg)
            self._set_stages()

    def _set_stages(self) -> None:
        """The router's stages, higher priority first (stable among equals)."""
        ordered = sorted(self._stages, key=lambda s: -s.priority)
        self.router.stages = tuple(s.stage for s in ordered)

    # ------------------------------------------------------------ IQ dispatch

    def dispatch_iq(
        self, session: C2SSession, iq: Element, to: JID | None
    ) -> Awaitable[None] | None:
        """IQ get/set for the server or a local account (RFC 6120 §8.2.3, §10.3.3)."""
        payload = payload_of(iq)
        if payload is None:
            session.send(self._iq_error(iq, session, StanzaErrorCondition.BAD_REQUEST))
            return None
        handler = self.iq_handlers.get((payload.ns, iq.attrs["type"]))
        if handler is not None:
            for_self = (
                to is None
                or not to.local
                or (to.local == session.username and to.domain == session.domain)
            )
            allowed = handler.to_server if for_self else handler.to_account
            if allowed or (for_self and to is not None and to.local and handler.to_account):
                return self._run_iq(handler, session, iq)
        # RFC 6120 §8.4: an IQ nobody understands gets service-unavailable.
        session.send(self._iq_error(iq, session, StanzaErrorCondition.SERVICE_UNAVAILABLE))
        return None

    def _run_iq(
        self, handler: IqHandler, session: C2SSession, iq: Element
    ) -> Awaitable[None] | None:
        try:
            result = handler.handler(session, iq)
        except StanzaError as exc:
            session.send(self._iq_error(iq, session, exc.condition, exc.text, exc.error_type))
            return None
        if result is None:
            return None
        return self._await_iq(result, session, iq)

    async def _await_iq(self, pending: Awaitable[None], session: C2SSession, iq: Element) -> None:
        try:
            await pending
        except StanzaError as exc:
            session.send(self._iq_error(iq, session, exc.condition, exc.text, exc.error_type))

    def _iq_error(
        self,
        iq: Element,
        session: C2SSession,
        condition: StanzaErrorCondition,
        text: str = "",
        error_type: str | None = None,
    ) -> Element:
        reply = error_reply(iq, condition, text, error_type=error_type)
        reply.attrs["to"] = session.full
        return reply

    async def pre_auth_stanza(self, conn: PreAuthConnection, iq: Element) -> None:
        """An IQ before authentication (XEP-0077 registration, XEP-0078 legacy auth)."""
        payload = payload_of(iq)
        handler = None
        if payload is not None:
            handler = self.pre_auth_handlers.get((payload.ns, iq.get("type") or ""))
        if handler is None:
            conn.send(error_reply(iq, StanzaErrorCondition.SERVICE_UNAVAILABLE))
            return
        if self.is_anonymous(conn.domain):
            # Registration and legacy login need accounts; an anonymous host has none.
            text = f"{conn.domain} is an anonymous host: log in with SASL ANONYMOUS"
            conn.send(error_reply(iq, StanzaErrorCondition.NOT_ALLOWED, text))
            return
        try:
            await handler.handler(conn, iq)
        except StanzaError as exc:
            conn.send(error_reply(iq, exc.condition, exc.text, error_type=exc.error_type))

    # ------------------------------------------------------------ lifecycle

    def session_bound(self, session: C2SSession) -> None:
        pending = self.hooks.fire(SessionBound(session))
        if pending is not None:
            self.spawn(pending)

    def session_closed(self, session: C2SSession) -> None:
        pending = self.hooks.fire(SessionClosed(session))
        if pending is not None:
            self.spawn(pending)

    async def provision_account(
        self, username: str, domain: str, source: str = "a client certificate"
    ) -> CredentialAnswer:
        """Create a password-less account for a certificate identity (EXTERNAL with
        `[tls] auto_provision`) or an ANONYMOUS session; an account created meanwhile
        is fine too.  `source` says which, for the log."""
        anonymous = self.is_anonymous(domain)
        try:
            await self.db.accounts.create(username, domain, {}, anonymous=anonymous)
            log.info("auto-provisioned %s@%s from %s", username, domain, source)
        except AccountExists:
            pass
        except Exception:
            log.exception("could not provision %s@%s", username, domain)
            return CredentialAnswer(temporary_failure=True)
        return CredentialAnswer(user_exists=True)

    def prune_throttles(self) -> None:
        now = asyncio.get_running_loop().time()
        self.auth_throttle.prune(now)
        self.registration_throttle.prune(now)
        for host in self.hosts.values():
            if host.anonymous_limit is not None:
                host.anonymous_limit.prune(now)

    def prepare_resource(self, text: str) -> str:
        """RFC 7622 §3.4: the resourcepart is an OpaqueString; raises ValueError."""
        prepared = _resourceprep.enforce(text)
        if len(prepared.encode()) > 1023:
            raise ValueError("resource longer than 1023 bytes")
        return prepared

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run a background coroutine the server waits for on shutdown; its failure
        is logged with its traceback (nobody else awaits it)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Future[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    async def drain(self) -> None:
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def features_after_auth(self) -> tuple[str, ...]:
        return tuple(f.xml for f in self.stream_features if not f.pre_auth)

    def features_before_auth_by_host(self) -> dict[str, tuple[str, ...]]:
        """Each virtual host's pre-authentication features: none on an anonymous host
        (no accounts to register or to log in to with jabber:iq:auth)."""
        return {
            domain: () if host.anonymous else self.features_before_auth(domain)
            for domain, host in self.hosts.items()
        }

    def features_before_auth(self, domain: str | None = None) -> tuple[str, ...]:
        """The pre-authentication features; those of `domain` when it is given."""
        return tuple(
            f.xml
            for f in self.stream_features
            if f.pre_auth and (domain is None or f.hosts is None or domain in f.hosts)
        )


def _configured_mechanisms(config: Config) -> set[str]:
    """Every SASL mechanism name the configuration can offer: the login gate counts
    these under their own names (a peer's unknown name counts as "other")."""
    names = set(config.auth.mechanisms)
    names.add("ANONYMOUS")  # an anonymous host's default
    for listener in config.listeners:
        names.update(listener.mechanisms or ())
    for host in config.hosts.values():
        names.update(host.mechanisms or ())
    return names
