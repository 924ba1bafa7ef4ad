"""The configured components: their domains in the router, their claims, their listener.

Each configured component's domain is registered with the router at start, for as
long as the server runs (`Router.register_service`), and listed in its parent
host's disco#items.  Whether a component is connected is decided per stanza: a
stanza to a connected component is written to its connection; to one that is not
connected, an IQ get/set or a message gets `service-unavailable` (RFC 6120 §8.3.3.19)
and presence is dropped, as no one is there to receive it.

One connection per component domain: the first to complete its handshake claims the
domain (`locator.py`); a second one gets `conflict` and is closed, and the first keeps
serving (Prosody's policy: a running gateway is not cut off by a stray second start).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from functools import partial
from typing import TYPE_CHECKING

from chatgate.components.connection import ComponentConnection
from chatgate.components.locator import ComponentLocator, LocalComponentLocator
from chatgate.jid import JID
from chatgate.modules.base import ServiceDomain
from chatgate.vocabulary.errors import ConfigError, StanzaErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.serialize import serialize
from chatgate.xmpp.session import C2SSession
from chatgate.xmpp.stanza import error_reply

if TYPE_CHECKING:
    from chatgate.components.cluster import ComponentRelay, RedisComponentLocator
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)

#: Component connections that have not completed their handshake, at most: a
#: component listener has a handful of legitimate peers.
MAX_PENDING = 64


class ComponentHub:
    """The components of one server process."""

    def __init__(
        self,
        ctx: ServerContext,
        locator: ComponentLocator | None = None,
        node: str = "local",
    ) -> None:
        """`locator` and `node`: this process's claims by default; `clustered` gives
        the Redis ones and the relay to other nodes."""
        config = ctx.config
        self.ctx = ctx
        #: shared secrets by component domain (`secret_file`s read now: ConfigError)
        self.secrets = {c.domain: config.component_secret(c) for c in config.components}
        self.locator: ComponentLocator = locator or LocalComponentLocator()
        self.node = node
        #: the connection serving each connected component, on this node
        self.connected: dict[str, ComponentConnection] = {}
        self._pending: set[ComponentConnection] = set()
        self._services: list[ServiceDomain] = []
        self._server: asyncio.base_events.Server | None = None
        #: where the listener is bound, once started
        self.address: tuple[str, int] | None = None
        #: stanzas for components on other nodes (a cluster only)
        self.relay: ComponentRelay | None = None
        self._shared: RedisComponentLocator | None = None

    @classmethod
    def for_context(cls, ctx: ServerContext) -> ComponentHub:
        """The hub `serve` runs: claims in Redis and a relay when the context is a
        cluster node, this process's own claims otherwise."""
        node = ctx.cluster
        if node is None:
            return cls(ctx)
        from chatgate.components.cluster import ComponentRelay, RedisComponentLocator

        shared = RedisComponentLocator(node)
        hub = cls(ctx, shared, node.name)
        hub._shared = shared
        hub.relay = ComponentRelay(ctx.peers, shared, hub.deliver_here)
        return hub

    # ------------------------------------------------------------ lifecycle

    def register(self) -> None:
        """Give every configured component domain to its handler, and list it in its
        parent's disco#items.  Raises ConfigError for a domain already served (a
        virtual host, MUC, upload)."""
        config = self.ctx.config
        for component in config.components:
            handler = partial(self._to_component, component.domain)
            presence = partial(self._presence_to_component, component.domain)
            try:
                self.ctx.router.register_service(component.domain, handler, presence)
            except ValueError:
                raise ConfigError(
                    f"components: {component.domain} is already served here (a virtual host"
                    " or a service such as MUC or upload): give the component another domain"
                ) from None
            service = ServiceDomain(
                component.domain, handler, config.component_parent(component), component.name
            )
            self._services.append(service)
            self.ctx.services.append(service)

    async def join_cluster(self) -> None:
        """In a cluster: take other nodes' stanzas for components connected here
        (before the node is counted in: `Server.start`)."""
        if self.relay is not None:
            await self.relay.start()

    async def start(self) -> None:
        """Open the component listener (after `register` and `join_cluster`)."""
        config = self.ctx.config
        listener = config.component_listener
        # Several processes on the same ports (`serve --workers`): each binds this
        # port too, and the kernel spreads the components among them (the claims in
        # Redis still allow one connection per component), as for the c2s ports.
        shared = config.cluster.enabled and any(c2s.reuse_port for c2s in config.listeners)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            partial(ComponentConnection, self),
            listener.host,
            listener.port,
            reuse_port=shared or None,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = (host, port)
        log.info("listening: components on %s:%d (%s)", host, port, ", ".join(sorted(self.secrets)))

    def close_listener(self) -> None:
        """No new component connections (those open are closed with the others)."""
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        """Close the listener and give the domains back to the router."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for service in self._services:
            self.ctx.router.unregister_service(service.domain, service.handler)
            if service in self.ctx.services:
                self.ctx.services.remove(service)
        self._services.clear()
        if self._shared is not None:
            await self._shared.stop()  # renewal ends, this node's claims are released

    # ------------------------------------------------------------ connections

    def admit(self, conn: ComponentConnection) -> bool:
        """A new connection, before its handshake: refused past `MAX_PENDING`."""
        if len(self._pending) >= MAX_PENDING:
            return False
        self._pending.add(conn)
        self.ctx.connections.add(conn)
        return True

    def claim(self, domain: str, conn: ComponentConnection) -> bool | Awaitable[bool]:
        """`conn` completed its handshake for `domain`: it serves it, unless another
        connection already does."""
        self._pending.discard(conn)
        if domain in self.connected:
            return False
        claimed = self.locator.claim(domain, self.node)
        if isinstance(claimed, bool):
            return self._settle(domain, conn, claimed)
        return self._settle_later(domain, conn, claimed)

    async def _settle_later(
        self, domain: str, conn: ComponentConnection, claimed: Awaitable[bool]
    ) -> bool:
        return self._settle(domain, conn, await claimed)

    def _settle(self, domain: str, conn: ComponentConnection, claimed: bool) -> bool:
        if claimed and domain not in self.connected:
            self.connected[domain] = conn
            return True
        return False

    def release(self, domain: str, conn: ComponentConnection) -> None:
        """`conn` no longer serves `domain`."""
        if self.connected.get(domain) is conn:
            del self.connected[domain]
            released = self.locator.release(domain, self.node)
            if released is not None:
                self.ctx.spawn(released)
            log.info("component %s disconnected", domain)

    def gone(self, conn: ComponentConnection) -> None:
        """`conn` is closed."""
        self._pending.discard(conn)
        self.ctx.connections.discard(conn)
        if conn.serving is not None:
            self.release(conn.serving, conn)

    # ------------------------------------------------------------ stanzas to components

    def _to_component(
        self, domain: str, origin: C2SSession, stanza: Element, to: JID
    ) -> Awaitable[None] | None:
        """The router's handler for `domain`: to the component here, to the node that
        holds it, or the error."""
        conn = self.connected.get(domain)
        if conn is not None and not conn.closed:
            conn.deliver(stanza)
            return None
        if self.relay is not None:
            return self._forward(domain, origin, stanza, serialize(stanza).encode())
        self._unavailable(domain, origin, stanza)
        return None

    async def _forward(self, domain: str, origin: C2SSession, stanza: Element, data: bytes) -> None:
        assert self.relay is not None
        if not await self.relay.forward(domain, data):
            self._unavailable(domain, origin, stanza)

    def _presence_to_component(self, domain: str, data: bytes) -> None:
        """The router's presence sink for `domain`: presence the server sends on an
        account's behalf (broadcasts, probes, unavailable, subscription stanzas), to
        the component here or on the node that holds it; dropped when it is not
        connected (nobody to tell)."""
        if self.deliver_here(domain, data) or self.relay is None:
            return
        self.ctx.spawn(self._relay_presence(domain, data))

    async def _relay_presence(self, domain: str, data: bytes) -> None:
        assert self.relay is not None
        await self.relay.forward(domain, data)

    def deliver_here(self, domain: str, data: bytes) -> bool:
        """A serialized stanza another node relayed for `domain`; False when its
        component is not connected here (any more)."""
        conn = self.connected.get(domain)
        if conn is None or conn.closed:
            return False
        conn.output.element(data)
        return True

    def _unavailable(self, domain: str, origin: C2SSession, stanza: Element) -> None:
        if stanza.name == "presence" or stanza.attrs.get("type") in ("error", "result"):
            return  # nobody to tell; errors are never answered (RFC 6120 §8.3.1)
        text = f"the component {domain} is not connected"
        origin.send(error_reply(stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE, text))
