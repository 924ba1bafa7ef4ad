"""Rosters kept in memory on several nodes: a change stored by one node makes the
others read the roster again.

Each node keeps the rosters of the accounts with a session there (presence
broadcasts read them).  A subscription processed on the sender's node changes the
contact's stored roster; the contact's node must not go on broadcasting to the
old subscribers.  Every stored change is announced on the ``rosters`` channel
(the owner's bare JID); a node that keeps that roster reads it again.  Between
the change and the reread (a Redis round trip) a broadcast may use the old list,
as it would have a moment before the change.

An inbound subscription request is delivered the same way: the node that stores
it writes it to its own sessions of the contact, and every other node to its own
when the reread shows the new request (`RosterService.requests_arrived`).  A
request is then never lost to a node's stale view of where the contact is
available (an initial presence whose announcement is still on its way).  A
request its sender withdraws is announced first on ``rosters-withdrawn``
("node\nbare\ncontact"): a node that showed the request delivers the withdrawal
after its reread, so never before the request.  The plain change follows on
``rosters``, whose format stays as it was for nodes of an older release (they
reread, and miss only the withdrawal; they also deliver no request on a reread,
so while a cluster is upgraded their sessions get requests stored by upgraded
nodes at their next login).
"""

from __future__ import annotations

import asyncio
import logging

from chatgate.cluster.locks import ClusterAccountLocks
from chatgate.cluster.node import ClusterNode, ClusterUnavailable
from chatgate.modules.roster.locks import LocalAccountLocks
from chatgate.modules.roster.service import Owner, RosterService

log = logging.getLogger(__name__)

#: seconds a resynchronisation waits for the kept rosters to be read again
RESYNC_WAIT = 10.0


def share_rosters(node: ClusterNode, service: RosterService) -> None:
    channel = node.key("rosters")
    withdrawals = node.key("rosters-withdrawn")
    me = node.name.encode()
    background: set[asyncio.Task[None]] = set()

    def spawn(coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        background.add(task)
        task.add_done_callback(background.discard)

    async def announce(owner: Owner, withdrawn: str | None) -> None:
        bare = f"{owner[0]}@{owner[1]}"
        try:
            if withdrawn is not None:
                # First, so a node reads the roster again with the withdrawal in
                # hand; nodes of an older release read only the plain change.
                await node.publish(withdrawals, me + f"\n{bare}\n{withdrawn}".encode())
            await node.publish(channel, me + b"\n" + bare.encode())
        except ClusterUnavailable:
            log.warning("cluster: a roster change of %s not announced", bare)

    def changed(owner: Owner, withdrawn: str | None) -> None:
        spawn(announce(owner, withdrawn))

    def received(data: bytes) -> None:
        """A change ("node\nbare"): read the roster again."""
        sender, _, bare = data.partition(b"\n")
        if sender == me:
            return
        local, _, domain = bare.decode().partition("@")
        spawn(service.refresh((local, domain)))

    def withdrawn(data: bytes) -> None:
        """A withdrawal ("node\nbare\ncontact"): read the roster again, then tell it."""
        sender, _, rest = data.partition(b"\n")
        if sender == me:
            return
        bare, _, contact = rest.decode().partition("\n")
        if not contact:
            return
        local, _, domain = bare.partition("@")
        spawn(service.refresh((local, domain), contact))

    local = service.locks
    if isinstance(local, LocalAccountLocks):
        # Changes take turns across nodes; the cache fill keeps this process's lock.
        service.locks = ClusterAccountLocks(local, node)
        service.cache_locks = local
    service.changed.append(changed)
    service.kept_elsewhere = True
    node.subscribe(channel, received)
    node.subscribe(withdrawals, withdrawn)

    async def forget_all() -> None:
        """After an outage announcements may have been lost: read every kept roster
        again, and return once they have been (up to `RESYNC_WAIT` seconds), so
        that what runs after the resynchronisation (`ClusterNode.on_resynced`)
        sees them."""
        refreshes = [asyncio.ensure_future(service.refresh(owner)) for owner in service.kept()]
        if refreshes:
            done, late = await asyncio.wait(refreshes, timeout=RESYNC_WAIT)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("cluster: a roster could not be read again: %s", task.exception())
            for task in late:  # still reading: they finish on their own
                background.add(task)
                task.add_done_callback(background.discard)

    node.on_reconnect(forget_all)
