"""Assembles storage, credential provider, modules and listeners; starts and stops gracefully.

`Server` is used by `chatgate serve` and, in-process, by the end-to-end tests.
On stop every session gets `<system-shutdown/>` and the stream close
(RFC 6120 §4.9.3.20) before the listeners and storage are closed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import signal
import ssl
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from chatgate.auth.internal import InternalProvider
from chatgate.auth.registry import (
    ProviderContext,
    build_provider,
    close_provider,
    start_provider,
)
from chatgate.config import Config, ListenerConfig, TlsMode, section
from chatgate.context import ServerContext
from chatgate.datadir import secure_data_dir
from chatgate.http.listener import HttpListener
from chatgate.http.options import HttpOptions
from chatgate.modules.anonymous import purge_anonymous_hosts
from chatgate.modules.legacy_auth import LegacyAuthOptions
from chatgate.modules.registry import builtin_modules, validate_module_options
from chatgate.sasl.base import Mechanism
from chatgate.sasl.registry import builtin_mechanisms
from chatgate.sasl.scram import with_unknown_user_iterations
from chatgate.sasl.selection import offered_mechanisms
from chatgate.storage.database import Database
from chatgate.storage.repositories.secrets import SecretStore
from chatgate.tls import ensure_certificate, http_tls, server_context, server_tls
from chatgate.vhost import build_hosts, host_mechanisms, validate_host_mechanisms
from chatgate.vocabulary.errors import StreamErrorCondition
from chatgate.vocabulary.facts import ConnectionFacts
from chatgate.xmpp.negotiation import NegotiationSettings
from chatgate.xmpp.transports.tcp import TcpTransport

if TYPE_CHECKING:
    from chatgate.auth.provider import CredentialProvider
    from chatgate.cluster.node import ClusterNode
    from chatgate.components.hub import ComponentHub

log = logging.getLogger("chatgate")

#: Seconds between idle sweeps: a connection silent for one whole interval
#: frees its parser (it is recreated on the next bytes).
IDLE_SWEEP = 2.0
#: Parsers freed in one sweep after which free heap pages are handed back to the OS.
TRIM_AFTER = 256


#: Allocations between two young-generation collections (CPython's default is 700).
GC_THRESHOLD0 = 20_000


def settle_garbage_collector() -> None:
    """Once started: move everything alive (modules, configuration, the warmed
    credential cache) out of the collector's sight, and collect less often.

    py-spy on TLS logins showed ~10% of the server's time in the cyclic collector,
    mostly walking long-lived start-up objects; `gc.freeze()` (CPython 3.7+) keeps
    them out of every later collection. Per-connection cycles are still collected."""
    gc.collect()
    gc.freeze()
    _, threshold1, threshold2 = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD0, threshold1, threshold2)


def release_free_memory() -> None:
    """Return free heap pages to the OS (glibc's malloc_trim; a no-op elsewhere).

    Freed parser buffers sit between live objects, so the heap cannot shrink from
    its top; malloc_trim(0) releases the free pages inside it (glibc >= 2.8).
    It walks the heap (about a millisecond per 100 MB), so it runs only after a
    sweep that freed many parsers."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True, slots=True)
class BoundListener:
    config: ListenerConfig
    host: str
    port: int

    def describe(self) -> str:
        return f"c2s {self.config.tls.value} on {self.host}:{self.port}"


#: The installation secret that keys SASL's answers for unknown users (SCRAM's
#: fake salts, DIGEST-MD5's fake digests).
SASL_SECRET = "sasl-unknown-user"
#: Where earlier versions kept that secret, one per data directory.
LEGACY_SECRET_FILE = "server.secret"


async def load_sasl_secret(store: SecretStore, data_dir: Path) -> bytes:
    """The installation secret for SASL's answers to unknown users, from the database.

    Stored once for every process on the database, so an unknown user looks the
    same from each of them and after every restart.  A ``server.secret`` left by
    an earlier version (one per data directory) is moved into the database when
    the database has none yet, so unknown users keep their salts over the
    upgrade, and removed either way (it would no longer be read).
    """
    path = data_dir / LEGACY_SECRET_FILE
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = b""
    secret = await store.get_or_create(SASL_SECRET, old or os.urandom(32))
    if old:
        if secret == old:
            log.info("moved %s into the database (installation secrets)", path)
        else:
            log.warning("%s differs from the database's secret, which is used: removed", path)
        path.unlink(missing_ok=True)
    return secret


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.ctx: ServerContext | None = None
        self.listeners: list[BoundListener] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._stopped = asyncio.Event()
        self._housekeeping_timer: asyncio.TimerHandle | None = None
        self._sweep_timer: asyncio.TimerHandle | None = None
        self.http: HttpListener | None = None
        #: this process as a cluster node (`[cluster] enabled`)
        self.cluster: ClusterNode | None = None
        #: XEP-0114 external components (`[[components]]`), when configured
        self.components: ComponentHub | None = None
        #: what `start` opened before the context exists (closed by `stop` through
        #: the context, or directly when the start failed before it)
        self._db: Database | None = None
        self._providers: list[CredentialProvider] = []

    async def start(self) -> None:
        """Open everything and listen.  A start that fails part-way (a port taken, a
        module's start work failing) undoes what it began (`stop`) before the error
        goes on: a cluster node leaves at once, its heartbeat removed and the rooms
        handed to it since `announce` handed back, instead of being judged gone
        after `node_timeout` with those rooms' occupants shut out (332)."""
        try:
            await self._start()
        except BaseException as exc:
            # The caller says why (`serve`: one line); this is what happens next.
            log.debug("start failed (%s): stopping what had started", exc)
            try:
                await self._stop_after_failed_start(exc)
            except Exception:
                log.exception("stopping after the failed start failed too")
            raise

    async def _stop_after_failed_start(self, exc: BaseException) -> None:
        cluster = self.cluster
        try:
            if cluster is not None and _is_cluster_unavailable(exc) and not await cluster.answers():
                cluster.abandon()  # no handovers through a Redis that hangs
        finally:  # (even if cancelled during the PING)
            await self.stop()

    async def _start(self) -> None:
        config = self.config
        # Every [modules.*] table is checked before anything is created or opened.
        modules = builtin_modules()
        validate_module_options(config, modules)
        # Before anything is written there: 0700, and what an earlier version left
        # readable to others tightened (logged).
        secure_data_dir(config.data_dir)
        mechanisms = with_unknown_user_iterations(
            builtin_mechanisms(tls=config.tls), config.auth.scram_iterations
        )
        validate_host_mechanisms(config, mechanisms)
        needs_tls = any(listener.tls is not TlsMode.NONE for listener in config.listeners)
        tls_context = server_tls(config) if needs_tls else None
        db = self._db = await Database.open(config.storage_url)
        secret = await load_sasl_secret(db.secrets, config.data_dir)
        # What was just made there (a generated certificate) with default modes.
        secure_data_dir(config.data_dir, level=logging.DEBUG)
        provider_context = ProviderContext(
            base_dir=config.base_dir,
            data_dir=config.data_dir,
            accounts=db.accounts,
            credential_cache_size=config.auth.credential_cache_size,
            legacy=db.legacy
            if section(config, "legacy_auth", LegacyAuthOptions).digest_md5
            else None,
        )
        provider = build_provider(config.auth.provider, provider_context)
        hosts = build_hosts(config, provider, provider_context)
        await start_provider(provider)
        self._providers.append(provider)
        for host in hosts.values():
            if host.owns_provider and host.provider is not provider:
                await start_provider(host.provider)
                self._providers.append(host.provider)
        for started in {id(h.provider): h.provider for h in hosts.values()}.values():
            if isinstance(started, InternalProvider):
                # Unknown users' PLAIN checks do the work a password set now costs.
                started.set_decoy_iterations(config.auth.scram_iterations)
            warm = getattr(started, "warm", None)
            if warm is not None:
                began = time.perf_counter()
                count = await warm()
                log.info(
                    "credential cache: %d accounts loaded in %.2f s",
                    count,
                    time.perf_counter() - began,
                )
        node = None
        if config.cluster.enabled:
            from chatgate.cluster.node import ClusterNode

            node = self.cluster = ClusterNode(config.cluster)
            # Not seen by the others before the modules are set up (`announce`).
            await node.connect()
        ctx = self.ctx = ServerContext(config, db, provider, hosts)
        if node is not None:
            from chatgate.cluster.wiring import join_cluster

            await join_cluster(ctx, node)
        await purge_anonymous_hosts(ctx)
        if config.streams.enabled:
            from chatgate.streams.service import StreamService

            ctx.streams = await StreamService.open(
                config.streams,
                domain=ctx.domain,
                db=db,
                data_dir=config.data_dir,
                gate=ctx.login_gate,
                provider=ctx.provider,
                cluster=ctx.cluster,
            )
        for name in modules.names():
            ctx.load(modules.get(name)())
        await ctx.start_modules()
        if config.components:
            # Their domains are checked against the modules' services before any
            # listener opens (a clash is a configuration error, not a half start).
            from chatgate.components.hub import ComponentHub

            self.components = ComponentHub.for_context(ctx)
            self.components.register()
            await self.components.join_cluster()
        if node is not None:
            # Every handler of other nodes' messages is in place: the others may
            # count this node in now (before any client can reach it).
            await node.announce()
        loop = asyncio.get_running_loop()

        def negotiation_settings(
            listener: ListenerConfig | HttpOptions, *, starttls: bool, require_tls: bool
        ) -> NegotiationSettings:
            """One listener's negotiation: its mechanisms per host, the modules' features."""
            per_host = {d: host_mechanisms(config, d, listener) for d in config.served_domains}

            def offered(facts: ConnectionFacts) -> list[str]:
                return offered_mechanisms(
                    per_host[facts.domain],
                    mechanisms,
                    hosts[facts.domain].provider.offers,
                    facts,
                    allow_plaintext_without_tls=config.auth.allow_plain_without_tls,
                )

            def make(name: str, facts: ConnectionFacts) -> Mechanism:
                advertised = offered(facts)
                plus_offered = any(n.endswith("-PLUS") for n in advertised)
                return mechanisms.get(name)(facts, secret, plus_offered, advertised=advertised)

            return NegotiationSettings(
                domain=config.server.domain,
                starttls_available=starttls,
                require_tls=require_tls,
                offered_mechanisms=offered,
                make_mechanism=make,
                extra_features=ctx.features_after_auth(),
                pre_auth_features=ctx.features_before_auth(),
                pre_auth_namespaces=frozenset(ns for ns, _type in ctx.pre_auth_handlers),
                domains=frozenset(hosts),
                host_pre_auth_features=ctx.features_before_auth_by_host(),
            )

        if config.http.enabled:
            # Web sessions are encrypted or not from their first byte (https:// or
            # http://): no STARTTLS, and over plain HTTP only what needs no TLS
            # (SCRAM; PLAIN only with `allow_plain_without_tls`) is offered.
            web_tls = http_tls(config) if config.http.tls_port is not False else None
            self.http = HttpListener(
                ctx,
                config.http,
                negotiation_settings(config.http, starttls=False, require_tls=False),
                web_tls,
            )
            await self.http.start()
        for listener in config.listeners:
            settings = negotiation_settings(
                listener,
                starttls=listener.tls is TlsMode.STARTTLS,
                require_tls=listener.require_tls and listener.tls is not TlsMode.NONE,
            )
            direct = listener.tls is TlsMode.DIRECT
            factory = partial(TcpTransport, ctx, partial(_same, settings), tls_context, direct)
            # TLS (direct or STARTTLS) is done by the transport itself (pyOpenSSL).
            server = await loop.create_server(
                factory,
                listener.host,
                listener.port,
                backlog=4096,
                # several processes on this port (`--workers`, [cluster]): the kernel spreads them
                reuse_port=listener.reuse_port or None,
            )
            self._servers.append(server)
            sock = server.sockets[0]
            host, port = sock.getsockname()[:2]
            bound = BoundListener(listener, host, port)
            self.listeners.append(bound)
            log.info("listening: %s (%s)", bound.describe(), ", ".join(config.served_domains))
        if self.components is not None:
            await self.components.start()
        self._housekeeping_timer = loop.call_later(60, self._housekeeping)
        settle_garbage_collector()
        self._sweep_timer = loop.call_later(IDLE_SWEEP, self._sweep_idle)

    def _sweep_idle(self) -> None:
        """Every few seconds: idle connections free their parsers (most of their memory)."""
        if self.ctx is not None:
            hibernated = sum(conn.sweep_idle() for conn in self.ctx.connections)
            if hibernated >= TRIM_AFTER:
                release_free_memory()
        self._sweep_timer = asyncio.get_running_loop().call_later(IDLE_SWEEP, self._sweep_idle)

    def _housekeeping(self) -> None:
        """Once a minute: forget expired throttle entries."""
        if self.ctx is not None:
            self.ctx.prune_throttles()
        self._housekeeping_timer = asyncio.get_running_loop().call_later(60, self._housekeeping)

    async def stop(self) -> None:
        """Graceful stop: no new connections, `<system-shutdown/>` to every session."""
        for timer in (self._housekeeping_timer, self._sweep_timer):
            if timer is not None:
                timer.cancel()
        for server in self._servers:
            server.close()
        if self.components is not None:
            self.components.close_listener()
        ctx = self.ctx
        if ctx is not None:
            for conn in list(ctx.connections):
                conn.close_stream(
                    StreamErrorCondition.SYSTEM_SHUTDOWN, "the server is shutting down"
                )
            try:
                await asyncio.wait_for(ctx.drain(), self.config.server.shutdown_grace)
            except TimeoutError:
                log.warning("some background work did not finish before shutdown")
            # modules' own stop work, while the cluster and the database are still there
            await ctx.stop_modules()
        for server in self._servers:
            await server.wait_closed()
        if self.components is not None:
            await self.components.stop()
        if self.http is not None:
            await self.http.stop()
        if ctx is not None and ctx.streams is not None:
            await ctx.streams.close()  # after the hooks: their last calls are saved
        if ctx is not None:
            await close_provider(ctx.provider)
            for host in ctx.hosts.values():
                if host.owns_provider and host.provider is not ctx.provider:
                    await close_provider(host.provider)
            await ctx.db.close()
        else:  # a start that failed before the context was made
            for provider in reversed(self._providers):
                await close_provider(provider)
            if self._db is not None:
                await self._db.close()
        self._providers = []
        self._db = None
        if self.cluster is not None:
            await self.cluster.close()  # last: the others see this node leave at once
        self._stopped.set()

    async def serve_forever(self) -> None:
        """Start, then run until SIGTERM or SIGINT, then stop gracefully.  The signals
        are taken from the start on: one that comes while the server is starting
        (migrating, joining its cluster, loading rooms) stops it gracefully once it
        has started, instead of killing it half-way (a cluster node would then
        leave as a crashed one does, its rooms not handed over)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        log.info("stopping")
        await self.stop()


def tls_context_for(config: Config) -> ssl.SSLContext:
    return server_context(*ensure_certificate(config))


def run(config: Config) -> None:
    """Run the server in this process until a signal stops it (uvloop when present)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(Server(config).serve_forever())
    else:
        uvloop.run(Server(config).serve_forever())


def _is_cluster_unavailable(exc: BaseException) -> bool:
    """(`cluster/` is imported only when `[cluster]` is enabled: not at the top.)"""
    from chatgate.cluster.node import ClusterUnavailable

    return isinstance(exc, ClusterUnavailable)


def _same(settings: NegotiationSettings) -> NegotiationSettings:
    """The negotiation settings of a listener, fixed at start (the transport asks a
    callable, so that a later change of settings can take effect per connection)."""
    return settings
