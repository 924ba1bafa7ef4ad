"""XEP-0045 multi-user chat: a service on `PREFIX.HOST` for every served virtual host.

The module wires the service (`service.py`) to the router's `ServiceDomain` seam
for each host, loads the persistent rooms before the listeners open, and makes a
session that ends leave every room it was in.  Rooms live in a `RoomRegistry`
(`registry.py`, in-process); in a cluster each room lives on its owning node, and
`relay.py` sends every stanza for a room there, `ownership.py` moves rooms as
nodes come and go.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from chatgate.modules.base import OnEvent, OnStart, OnStop, Registration, ServiceDomain, Spec
from chatgate.modules.muc.archive import MamRoomArchive
from chatgate.modules.muc.leaving import LeavingAwarePeers
from chatgate.modules.muc.occupancy import leave
from chatgate.modules.muc.options import MucOptions
from chatgate.modules.muc.ownership import STOP_TIMEOUT, RoomOwnership
from chatgate.modules.muc.registry import LocalRoomRegistry, RoomRegistry
from chatgate.modules.muc.relay import RoomRelay
from chatgate.modules.muc.service import MucService, RoomArchive
from chatgate.storage.repositories.rooms import RoomRepository
from chatgate.xmpp.events import BecameUnavailable, RemoteSessionLost, SessionClosed
from chatgate.xmpp.sm_events import SessionMovedIn, SessionMovedOut, SessionMovingOut

if TYPE_CHECKING:
    from chatgate.context import ServerContext

log = logging.getLogger(__name__)


class MultiUserChat:
    name: ClassVar[str] = "muc"
    depends: ClassVar[tuple[str, ...]] = ()
    implements: ClassVar[tuple[Spec, ...]] = (
        Spec("XEP-0045", "1.35"),
        Spec("XEP-0249", "1.2"),
        Spec("XEP-0359", "0.7"),
        Spec("XEP-0410", "1.1"),
        Spec("XEP-0421", "0.2"),
        Spec("XEP-0425", "0.3"),
    )
    Options = MucOptions

    def __init__(self) -> None:
        self.service: MucService | None = None
        self.registry: RoomRegistry = LocalRoomRegistry()
        self.relay: RoomRelay | None = None

    def setup(self, ctx: ServerContext) -> Iterable[Registration]:
        options = ctx.options(self.name, MucOptions)
        if not options.enabled:
            return
        repository = RoomRepository(ctx.db.engine)
        service = MucService(
            ctx.router,
            options,
            self.registry,
            repository,
            archive=_room_archive(ctx),
            spawn=ctx.spawn,
        )
        service.leave = partial(leave, service)
        self.service = service
        domains = {f"{options.domain_prefix}.{host}": host for host in ctx.hosts}
        peers = LeavingAwarePeers(ctx.peers)
        relay = RoomRelay(service, peers, max_stanza_bytes=ctx.config.limits.max_stanza_size)
        ownership = RoomOwnership(service, relay, repository, domains, peers)
        self.relay = relay

        async def load_rooms() -> None:
            await ownership.start()
            log.info("multi-user chat on %s", ", ".join(sorted(domains)))

        def closed(event: SessionClosed) -> None:
            relay.session_ended(event.session.full)

        def unavailable(event: BecameUnavailable) -> None:
            # broadcast unavailable leaves every room too (XEP-0045 §7.14)
            relay.session_ended(event.session.full)

        def lost(event: RemoteSessionLost) -> None:
            # a session of another cluster node died with its node: it leaves the
            # rooms this node owns
            relay.remote_session_ended(event.full)

        yield OnStart(load_rooms)
        # a node stopping cleanly hands its rooms to the others (nothing without a cluster)
        yield OnStop(ownership.stop, timeout=STOP_TIMEOUT)
        yield OnEvent(SessionClosed, closed, priority=50)
        yield OnEvent(BecameUnavailable, unavailable, priority=50)
        yield OnEvent(RemoteSessionLost, lost, priority=50)
        # XEP-0198 resumption on another node: the rooms go with the session
        yield OnEvent(SessionMovingOut, lambda e: relay.moving_out(e.session.full, e.carry))
        yield OnEvent(SessionMovedOut, lambda e: relay.moved_out(e.session.full))
        yield OnEvent(SessionMovedIn, lambda e: relay.moved_in_here(e.session.full, e.carry))
        for domain, host in domains.items():
            yield ServiceDomain(domain, relay.handle, host, options.name)


def _room_archive(ctx: ServerContext) -> RoomArchive | None:
    """The MAM module's room archive, when it is loaded and enabled."""
    record = ctx.modules.get("mam")
    service = getattr(record.module, "service", None) if record is not None else None
    return MamRoomArchive(service) if service is not None else None
