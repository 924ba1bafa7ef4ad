"""XEP-0280 carbons in a cluster: which sessions of every node enabled carbons,
known in every node's memory, so the node that routes a message copies it to an
account's resources wherever they are, without asking Redis per message.

A message is routed on its sender's node; its `<sent/>` copies go to the
sender's other resources and its `<received/>` copies to the recipient's, either
of which may be on any node.  Reading a Redis set per account while routing
would add a round trip to every message of an account with carbons on (and a
wait to the synchronous router); instead each node replicates what the others
enabled, which changes only at an enable, a disable or a session's end.

- Each node keeps its own sessions in a `LocalCarbonsState` and, per other node,
  ``bare -> resources with carbons on`` (`_remote`).
- A change of an account on this node is written to this node's Redis hash
  ``carbons:NODE`` (field: the bare JID, value: its resources, newline-separated;
  no field when none) and broadcast on the peers' topic ``carbons`` as the
  account's whole set (idempotent: a later message replaces an earlier one).
  Both go out on the node's lean connection, in that order.
- A node reads the others' hashes at start and after Redis comes back, and reads
  a node's hash when that node joins; a node seen joining is also sent this
  node's whole state (it may have read our hash before our last change and
  before we knew it was there to hear it).  A node gone (`on_node_gone`) takes
  its entries with it.
- Redis away: copies still go to what is known (this node's sessions, and the
  others' as they were); changes meanwhile are logged once and sent again,
  whole, when Redis returns (`on_reconnect`: this node's hash rewritten, its
  state broadcast, the others' hashes read again).

The copy itself goes through the router (`deliver_to_full`), which forwards to
another node's session through its stand-in.  A copy for a session that closed
a moment ago on another node is dropped there, as for any stanza to a session
that just closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection
from typing import Any

from chatgate.cluster.node import ClusterNode
from chatgate.modules.carbons_state import LocalCarbonsState
from chatgate.peers import Peers
from chatgate.xmpp.session import C2SSession

log = logging.getLogger(__name__)

TOPIC = "carbons"
#: resources of one account another node may report (more are ignored: a bound
#: account never has more than `[session] max_resources`)
MAX_RESOURCES = 1000
#: seconds an enable or disable waits for Redis to take it before it is answered
SETTLE_TIMEOUT = 2.0
#: seconds before the whole state is sent again after a change reached not every node
RESEND_DELAY = 1.0
#: marks a node whose whole state arrived while its hash was being read
_WHOLE = "\0whole"


class ClusterCarbonsState:
    """`CarbonsState` of a node of a cluster (see the module docstring)."""

    def __init__(self, node: ClusterNode, peers: Peers) -> None:
        self.node = node
        self.peers = peers
        self.local = LocalCarbonsState()
        #: other node -> bare -> its resources there with carbons on
        self._remote: dict[str, dict[str, frozenset[str]]] = {}
        #: bare -> how many other nodes report resources of it (fast `of` misses)
        self._remote_count: dict[str, int] = {}
        #: accounts a node changed while its hash was being read: the message wins
        self._touched: dict[str, set[str]] = {}
        self._failing = False  # one log line per Redis outage
        self._resend: asyncio.TimerHandle | None = None
        peers.on_message(TOPIC, self._arrived)
        node.on_node_gone(self._gone)
        node.on_node_joined(self._joined)
        node.on_reconnect(self._reconnected)

    # ------------------------------------------------------------ CarbonsState

    def enable(self, session: C2SSession) -> None:
        self.local.enable(session)
        self._share(session.bare)

    def disable(self, session: C2SSession) -> None:
        if self.local.enabled(session):
            self.local.disable(session)
            self._share(session.bare)

    def enabled(self, session: C2SSession) -> bool:
        return self.local.enabled(session)

    def of(self, bare: str) -> Collection[str]:
        here = self.local.of(bare)
        if bare not in self._remote_count:
            return here
        found = list(here)
        for accounts in self._remote.values():
            resources = accounts.get(bare)
            if resources:
                found.extend(f"{bare}/{r}" for r in resources)
        return found

    def __bool__(self) -> bool:
        return bool(self.local) or bool(self._remote_count)

    async def settled(self) -> None:
        """Until Redis has passed on what this node sent before (a PING after the
        PUBLISHes on the same connection), at most `SETTLE_TIMEOUT` seconds."""
        try:
            await asyncio.wait_for(self.node.send("PING"), SETTLE_TIMEOUT)
        except Exception as exc:
            self._log_failure(exc)

    # ------------------------------------------------------------ life

    async def start(self) -> None:
        """Clear what this node's previous run left (and tell the others, who may
        have read it when they saw this run join), then read every other node's."""
        await self._rewrite_own()
        self.peers.broadcast(TOPIC, json.dumps({"all": self._snapshot()}).encode())
        await self._read_all()

    # ------------------------------------------------------------ sharing

    def _key(self, node: str) -> str:
        return self.node.key("carbons", node)

    def _share(self, bare: str) -> None:
        resources = self.local.resources(bare)
        key = self._key(self.node.name)
        if resources:
            reply = self.node.send("HSET", key, bare, "\n".join(resources))
        else:
            reply = self.node.send("HDEL", key, bare)
        reply.add_done_callback(self._written)
        payload = json.dumps({"b": bare, "r": resources}).encode()
        if self.peers.broadcast(TOPIC, payload) < len(self.peers.alive()) - 1:
            self._missed()

    def _missed(self) -> None:
        """A change did not reach every node (Redis away, or this node's queue to it
        full): while Redis is away `_reconnected` sends everything; otherwise the
        whole state goes again in a second."""
        if self.node.connected and self._resend is None:
            log.warning("carbons: a change did not reach every node; sending all again")
            loop = asyncio.get_running_loop()
            self._resend = loop.call_later(RESEND_DELAY, self._send_all)

    def _send_all(self) -> None:
        self._resend = None
        payload = json.dumps({"all": self._snapshot()}).encode()
        if self.peers.broadcast(TOPIC, payload) < len(self.peers.alive()) - 1:
            self._missed()

    def _written(self, reply: asyncio.Future[Any]) -> None:
        if reply.cancelled():
            return
        exc = reply.exception()
        if exc is not None:
            self._log_failure(exc)

    def _log_failure(self, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "carbons: Redis unreachable (%s): other nodes learn this node's carbons"
                " when it returns",
                exc,
            )

    def _snapshot(self) -> dict[str, list[str]]:
        return {bare: self.local.resources(bare) for bare in self.local.accounts()}

    async def _rewrite_own(self) -> None:
        key = self._key(self.node.name)
        snapshot = self._snapshot()
        async with self.node.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if snapshot:
                pipe.hset(key, mapping={b: "\n".join(r) for b, r in snapshot.items()})
            await pipe.execute()

    async def _read_all(self) -> None:
        for other in sorted(self.peers.alive() - {self.node.name}):
            await self._read(other)

    async def _read(self, other: str) -> None:
        """Replace what is known of `other` by its hash (changes announced while the
        hash was read are kept: they are newer)."""
        touched = self._touched.setdefault(other, set())
        try:
            fields = await self.node.redis.hgetall(self._key(other))
        finally:
            self._touched.pop(other, None)
        if other not in self.peers.alive() or _WHOLE in touched:
            return  # gone meanwhile, or its whole state arrived meanwhile (newer)
        current = self._remote.get(other, {})
        fresh: dict[str, frozenset[str]] = {}
        for raw_bare, raw in fields.items():
            bare = _text(raw_bare)
            if bare not in touched:
                fresh[bare] = _resources(_text(raw).split("\n"))
        for bare in touched:
            if bare in current:
                fresh[bare] = current[bare]
        self._replace(other, fresh)

    def _replace(self, other: str, accounts: dict[str, frozenset[str]]) -> None:
        for bare in self._remote.pop(other, {}):
            self._uncount(bare)
        accounts = {b: r for b, r in accounts.items() if r}
        if accounts:
            self._remote[other] = accounts
            for bare in accounts:
                self._remote_count[bare] = self._remote_count.get(bare, 0) + 1

    def _set(self, other: str, bare: str, resources: frozenset[str]) -> None:
        accounts = self._remote.get(other)
        had = accounts is not None and bare in accounts
        if resources:
            if accounts is None:
                accounts = self._remote[other] = {}
            accounts[bare] = resources
            if not had:
                self._remote_count[bare] = self._remote_count.get(bare, 0) + 1
        elif had:
            assert accounts is not None
            del accounts[bare]
            if not accounts:
                del self._remote[other]
            self._uncount(bare)

    def _uncount(self, bare: str) -> None:
        left = self._remote_count.get(bare, 0) - 1
        if left > 0:
            self._remote_count[bare] = left
        else:
            self._remote_count.pop(bare, None)

    # ------------------------------------------------------------ arriving

    def _arrived(self, sender: str, payload: bytes) -> None:
        try:
            message = json.loads(payload)
            if "all" in message:
                accounts = {str(b): _resources(r) for b, r in dict(message["all"]).items()}
                self._replace(sender, accounts)
                if sender in self._touched:
                    self._touched[sender].add(_WHOLE)
                return
            bare = str(message["b"])
            resources = _resources(message["r"])
        except (ValueError, KeyError, TypeError):
            log.warning("carbons: a malformed message from node %s was dropped", sender)
            return
        touched = self._touched.get(sender)
        if touched is not None:
            touched.add(bare)
        self._set(sender, bare, resources)

    # ------------------------------------------------------------ membership

    def _gone(self, other: str) -> None:
        self._replace(other, {})

    async def _joined(self, other: str) -> None:
        # It may have read our hash before it was in our `others` (so before our
        # broadcasts reached it): our whole state, then its own hash.
        self.peers.send(other, TOPIC, json.dumps({"all": self._snapshot()}).encode())
        try:
            await self._read(other)
        except Exception as exc:  # Redis away: `_reconnected` reads it again
            log.debug("carbons: could not read node %s's state: %s", other, exc)

    async def _reconnected(self) -> None:
        """Redis is back and may have lost everything: write ours again, tell the
        others, read theirs."""
        self._failing = False
        await self._rewrite_own()
        self.peers.broadcast(TOPIC, json.dumps({"all": self._snapshot()}).encode())
        for other in list(self._remote):
            if other not in self.peers.alive():
                self._replace(other, {})
        await self._read_all()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _resources(values: Any) -> frozenset[str]:
    """Resources as another node sent them (a list of strings), bounded."""
    if not isinstance(values, list):
        raise TypeError("resources must be a list")
    return frozenset(str(v) for v in values[:MAX_RESOURCES] if v)
