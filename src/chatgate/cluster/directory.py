"""The session directory of a cluster: every node's sessions, decided in Redis,
mirrored in each node's memory so that delivery never waits.

What Redis holds (keys under `[cluster] key_prefix`):
- ``res:BARE`` (hash resource -> "node|sid"): who holds each resource of an
  account.  Claims and releases are Lua scripts, so the resource-conflict policy
  and `max_resources` hold across nodes (RFC 6120 §7.7.2.2, §7.6.2.1);
- ``sessions:NODE`` (hash "bare/resource" -> JSON [sid, available, priority,
  presence, interested]): a node's own sessions, which a node (re)joining reads
  to build its mirror, and which the survivors of a dead node clear;
- ``hibernated:NODE`` (hash "bare/resource" -> sid): a node's sessions waiting to
  be resumed (XEP-0198), beside the snapshot rather than in it (a node of the
  previous release reads the snapshot's five fields and no more); read with it;
- channel ``events:NODE``, one per node: each change of a session (claimed,
  released, available, unavailable, interested, hibernated, woken) is published
  by the script that makes it to every other node in the set ``nodes`` (never to
  its own node, so nobody reads its own changes back, and a node alone publishes
  nothing), and applied by each to its mirror in order.  A node of the previous
  release ignores the changes it does not know.  A node joining subscribes before it
  reads the others' snapshots: a change made before its name entered ``nodes``
  is in a snapshot, one made after reaches its channel.

The router's table (`table`) holds this node's sessions and a `RemoteSession` for
each session elsewhere; writing to a remote one hands the serialized stanza to
the `Forwarder` (one PUBLISH per node per loop turn).  A frame whose session is
gone when it arrives: a message is routed again here once (never forwarded a
second time: it is stored offline instead), anything else is dropped, as for a
session that just closed.

Faults:
- a node gone (`ClusterNode.on_node_gone`): its remote sessions leave the mirror,
  `RemoteSessionLost` tells the presence module (contacts here see them
  unavailable), and its Redis entries are removed (idempotent on every survivor);
- a PUBLISH nobody heard: the node is dead before its heartbeat expired: its
  messages are stored offline here;
- Redis unreachable: claims are decided locally (as a single node would) and
  remembered; on return (`on_reconnect`) every local session is claimed again
  (one that another node took meanwhile is closed with <conflict/>), this node's
  snapshot rewritten and announced, and the mirror rebuilt from the others'.  A
  resync that fails part-way is tried again, with a growing delay, while Redis
  stays reachable.  Availability presence refused meanwhile is noted (who missed
  whom, not what: `_keep_missed`) and told as `PresenceMissed` once the cluster
  has resynchronised, so a contact online through the outage sees what changed.

What another node wrote and this one cannot read (a damaged entry, or a later
release's form beyond the fields known here) is skipped with a warning; the
rest is read.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from redis.exceptions import RedisError

from chatgate.cluster.forwarding import (
    HEADER_SIZE,
    KINDS,
    Forwarder,
    Frame,
    FrameKind,
    unpack_header,
)
from chatgate.cluster.node import ClusterNode, ClusterUnavailable
from chatgate.cluster.resp import RespError, Script, pack
from chatgate.config import ResourceConflict
from chatgate.hooks import Hooks
from chatgate.jid import JID
from chatgate.vocabulary.errors import StanzaErrorCondition, StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import serialize
from chatgate.xmpp.directory import Claimed, ClaimRefused, SessionFactory, _random_resource
from chatgate.xmpp.events import PresenceMissed, RemoteSessionLost
from chatgate.xmpp.router import MessageUndeliverable
from chatgate.xmpp.session import STANZAS, C2SSession
from chatgate.xmpp.stanza import error_reply

log = logging.getLogger(__name__)

#: Publishes an event to every other node's events channel.  KEYS[n]: the set of
#: node names; `first` is the index in ARGV of: the channels' prefix, this node's
#: name, the event.
_TO_OTHERS = """
local function to_others(nodes, first)
  local me = ARGV[first + 1]
  for _, node in ipairs(redis.call('SMEMBERS', nodes)) do
    if node ~= me then
      redis.call('PUBLISH', ARGV[first] .. node, ARGV[first + 2])
    end
  end
end
"""

#: A claim's or release's event, made by the script only when another node will
#: read it (a node alone spends nothing on it).  Its form is `_event_of`'s.
_SESSION_EVENT = """
local function session_event(nodes, prefix, me, op, sid, bare, resource)
  local event
  for _, node in ipairs(redis.call('SMEMBERS', nodes)) do
    if node ~= me then
      event = event or cjson.encode({me, op, sid, bare, resource, 0, cjson.null})
      redis.call('PUBLISH', prefix .. node, event)
    end
  end
end
"""

#: KEYS: res:BARE, sessions:NODE, nodes.  ARGV: resource, sid, policy, max, chosen
#: (1: the server chose the resource), bare JID, the events channels' prefix, this
#: node.  Keeps the snapshot and publishes the C event itself: one command a login.
_CLAIM = (
    _SESSION_EVENT
    + """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  if ARGV[3] == 'reject' then return {'conflict'} end
  if ARGV[3] == 'randomize' or ARGV[5] == '1' then return {'rename'} end
else
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return {'limit'} end
end
local me, sid = ARGV[8], ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], me .. '|' .. sid)
local state = cjson.encode({sid, false, 0, cjson.null, false})
redis.call('HSET', KEYS[2], ARGV[6] .. '/' .. ARGV[1], state)
session_event(KEYS[3], ARGV[7], me, 'C', sid, ARGV[6], ARGV[1])
return {'ok', held or ''}
"""
)

#: KEYS: res:BARE, sessions:NODE, nodes.  ARGV: resource, sid, bare JID, the events
#: channels' prefix, this node.  Removes only what this very session left (a newer
#: session on the resource keeps its entries), then publishes the R event.
_RELEASE = (
    _SESSION_EVENT
    + """
local me, sid = ARGV[5], ARGV[2]
if redis.call('HGET', KEYS[1], ARGV[1]) == me .. '|' .. sid then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local field = ARGV[3] .. '/' .. ARGV[1]
local entry = redis.call('HGET', KEYS[2], field)
if entry then
  -- an entry that cannot be read goes too: the release is still announced
  local ok, state = pcall(cjson.decode, entry)
  if not ok or type(state) ~= 'table' or state[1] == sid then
    redis.call('HDEL', KEYS[2], field)
  end
end
session_event(KEYS[3], ARGV[4], me, 'R', sid, ARGV[3], ARGV[1])
return 1
"""
)

#: An availability or interest change.  KEYS: nodes.  ARGV: the events channels'
#: prefix, this node, the event.
_ANNOUNCE = (
    _TO_OTHERS
    + """
to_others(KEYS[1], 1)
return 1
"""
)

#: A session resumed here from another node (XEP-0198 across nodes): the resource
#: moves only if the node it comes from still holds it under that sid, with no
#: CLOSE to it (it handed the session over) and no conflict policy (the same
#: session goes on).  KEYS: res:BARE, sessions:NODE, nodes.  ARGV: resource,
#: "node|sid" (new), "node|sid" (expected), the snapshot field, its JSON, then the
#: events channels' prefix, this node, the events (C, then A and I as they hold,
#: one PUBLISH: the other nodes never see the session unavailable in between).
_TAKE_OVER = (
    _TO_OTHERS
    + """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
to_others(KEYS[3], 6)
return 1
"""
)

#: Claim again after an outage, only where nobody else holds the resource -- or
#: where a session waiting to be resumed on another node holds it (XEP-0198: a
#: client that could not resume during the outage bound anew, as it is told to;
#: the newer, live session wins as a bind would have).  KEYS: res:BARE, this
#: node's hibernated:NODE.  ARGV: resource, "node|sid", the prefix of the
#: hibernated:NODE keys ('': never take over), the full JID, the sid when the
#: session itself waits ('' when live: written with the claim, so that no other
#: node's reassert sees the claim without it).  Returns 1 when ours, 0 when
#: another holds it, or the "node|sid" of the waiting session it replaced.
_REASSERT = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and held ~= ARGV[2] then
  local bar = string.find(held, '|', 1, true)
  if ARGV[3] == '' or not bar then return 0 end
  local node = string.sub(held, 1, bar - 1)
  if redis.call('HGET', ARGV[3] .. node, ARGV[4]) ~= string.sub(held, bar + 1) then
    return 0
  end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return held
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], ARGV[4], ARGV[5]) end
return 1
"""

#: A dead run's hibernated sessions (its sids begin with its boot id), not those a
#: new run under the same name wrote since.  KEYS: hibernated:NODE.  ARGV: boot id.
_CLEAR_ASLEEP = """
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if string.sub(fields[i + 1], 1, string.len(ARGV[1])) == ARGV[1] then
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
return 1
"""

#: A dead run's entries.  KEYS: sessions:NODE.  ARGV: key prefix, node, boot id
#: ('': every run's).  An entry that cannot be read is the node's to clear when it
#: starts again under its name (ARGV[3] ''), since its run cannot be told.
_CLEAR_NODE = """
local fields = redis.call('HGETALL', KEYS[1])
local removed = 0
for i = 1, #fields, 2 do
  local ok, entry = pcall(cjson.decode, fields[i + 1])
  local sid = ok and type(entry) == 'table' and entry[1]
  local slash = string.find(fields[i], '/', 1, true)
  if type(sid) ~= 'string' or not slash then
    if ARGV[3] == '' then
      redis.call('HDEL', KEYS[1], fields[i])
    end
  elseif ARGV[3] == '' or string.sub(sid, 1, string.len(ARGV[3])) == ARGV[3] then
    local bare = string.sub(fields[i], 1, slash - 1)
    local resource = string.sub(fields[i], slash + 1)
    local key = ARGV[1] .. 'res:' .. bare
    if redis.call('HGET', key, resource) == ARGV[2] .. '|' .. sid then
      redis.call('HDEL', key, resource)
    end
    redis.call('HDEL', KEYS[1], fields[i])
    removed = removed + 1
  end
end
return removed
"""


#: A refused stanza up to this size comes back whole in its error (clients match
#: the error to the message they sent); a bigger one comes back without payload.
ECHO_LIMIT = 4096
#: Closes kept for claims of ours not yet answered (a handful at most in practice).
EARLY_CLOSES = 1024
#: Seconds between looks at a full socket to Redis, for held availability changes.
DIRTY_RETRY = 0.2
#: Bytes of other nodes' changes held while the mirror loads; past it the
#: snapshots are read again, at most `MIRROR_READS` times in all.
MAX_HELD_EVENT_BYTES = 16 * 1024 * 1024
MIRROR_READS = 3
#: (recipient, sender) pairs of refused presence a node notes at most, and the
#: seconds after a resync it keeps those whose recipient has not come back.
MISSED_PAIRS = 100_000
MISSED_TTL = 60.0
#: Accounts whose sessions on other nodes could not be told to close (Redis
#: away), kept to close them once the cluster has resynchronised.
OWED_CLOSES = 10_000
#: Seconds before a failed resync is tried again, doubled each time up to the max.
RESYNC_RETRY = 0.5
RESYNC_RETRY_MAX = 30.0
_BOUND_ELSEWHERE = "the resource was bound elsewhere meanwhile"
#: Which of the owed closes (account -> condition, text) still hold.
OwedCheck = Callable[[dict[str, tuple[StreamErrorCondition, str]]], Awaitable[set[str]]]
#: After an outage, how long a live session whose resource another node's session
#: holds waits for that node's resync (which says whether that session waits to
#: be resumed, and so loses to it), and how often it looks.
CONTEST_WAIT = 300.0
CONTEST_RETRY = 0.5
#: A holder's "settled" mark (`ClusterNode.settled_key`) counts when at least this
#: many seconds newer than this node's loss of Redis (clocks kept by NTP).
SETTLED_MARGIN = 1.0

_SCRIPTS = {
    "claim": Script(_CLAIM),
    "release": Script(_RELEASE),
    "announce": Script(_ANNOUNCE),
    "reassert": Script(_REASSERT),
    "clear": Script(_CLEAR_NODE),
    "take_over": Script(_TAKE_OVER),
    "clear_asleep": Script(_CLEAR_ASLEEP),
}

_CLAIM_SHA = _SCRIPTS["claim"].sha
_RELEASE_SHA = _SCRIPTS["release"].sha


#: claim attempts with a server-chosen suffix before a bind gets <conflict/>
CLAIM_ATTEMPTS = 4


class _ClaimInFlight:
    """One claim waiting for the claim script's answer.  Each answer settles
    `decided`, or (a resource taken under "randomize", or chosen by the server)
    asks again with a new suffix; Redis unreachable decides on this node alone.
    A claim whose `decided` was cancelled meanwhile is released at once, so no
    resource stays held for a bind nobody waits for."""

    __slots__ = (
        "attempts",
        "chosen",
        "decided",
        "directory",
        "resource",
        "session",
        "session_for",
        "sid",
    )

    def __init__(
        self,
        directory: ClusterSessionDirectory,
        decided: asyncio.Future[Claimed],
        session_for: SessionFactory,
        resource: str | None,
        session: C2SSession,
    ) -> None:
        self.directory = directory
        self.decided = decided
        self.session_for = session_for
        self.resource = resource
        self.session = session
        self.chosen = resource is None
        self.sid = ""
        self.attempts = 0

    def ask(self, *, with_source: bool = False) -> None:
        directory = self.directory
        if not with_source:
            self.attempts += 1
            self.sid = directory._new_sid()
        args = directory._claim_args(self.session, self.sid, self.chosen)
        if with_source:  # Redis forgot the script (restarted, flushed)
            command = pack("EVAL", _SCRIPTS["claim"].source, 3, *args)
        else:
            command = pack("EVALSHA", _CLAIM_SHA, 3, *args)
        directory.node.call(command, self.answered, deferrable=True)

    def answered(self, answer: Any) -> None:
        """The claim script's answer, or the error in its place (read from Redis's
        socket: a bug here fails this bind, never the connection to Redis)."""
        try:
            self._settle(answer)
        except Exception as exc:
            log.exception("cluster: a claim's answer could not be handled")
            if not self.decided.done():
                self.decided.set_exception(exc)

    def _settle(self, answer: Any) -> None:
        directory, decided = self.directory, self.decided
        if isinstance(answer, RespError) and str(answer).startswith("NOSCRIPT"):
            self.ask(with_source=True)
            return
        if isinstance(answer, Exception):  # Redis away, or an error from a script
            self._alone(answer)
            return
        verdict = _text(answer[0])
        if verdict == "ok":
            claimed = directory._bound(self.session, self.sid, _text(answer[1]))
            if decided.cancelled():
                directory.release(claimed[0])
            else:
                decided.set_result(claimed)
        elif verdict == "rename" and self.attempts < CLAIM_ATTEMPTS:
            self.session = self.session_for(f"{self.session.resource}-{_random_resource()[:8]}")
            self.chosen = True
            self.ask()
        elif verdict == "limit":
            self._refuse(
                ClaimRefused(StanzaErrorCondition.RESOURCE_CONSTRAINT, "too many resources")
            )
        else:  # "conflict", or every suffix taken
            self._refuse(ClaimRefused(StanzaErrorCondition.CONFLICT))

    def _alone(self, error: BaseException) -> None:
        directory = self.directory
        directory._warn("claim", "cluster: claims decided on this node alone (Redis: %s)", error)
        try:
            claimed = directory._claim_locally(self.session_for, self.session, self.resource)
        except ClaimRefused as refused:
            self._refuse(refused)
            return
        if self.decided.cancelled():
            directory.release(claimed[0])
        else:
            self.decided.set_result(claimed)

    def _refuse(self, refused: ClaimRefused) -> None:
        if not self.decided.cancelled():
            self.decided.set_exception(refused)


class RemoteSession:
    """A session on another node, as the router sees it: writes are forwarded."""

    __slots__ = (
        "_directory",
        "available",
        "bare",
        "full",
        "interested",
        "node",
        "presence",
        "priority",
        "resource",
        "sid",
        "target",
    )

    def __init__(
        self, directory: ClusterSessionDirectory, node: str, sid: str, bare: str, resource: str
    ) -> None:
        self._directory = directory
        self.node = node
        self.sid = sid
        self.bare = bare
        self.resource = resource
        self.full = f"{bare}/{resource}"
        #: the full JID as frames carry it
        self.target = self.full.encode()
        self.available = False
        self.priority = 0
        self.presence: Element | None = None
        self.interested = False

    def write(self, data: bytes) -> None:
        directory = self._directory
        # Plain ints: packing an IntEnum member costs a call per stanza.
        kind = _REROUTED if directory.rerouting else _STANZA
        if not directory._forward(self.node, kind, self.target, data):
            directory.refused(data, self.full)

    def send(self, stanza: Element) -> None:
        self.write(serialize(stanza).encode())

    def close(self, condition: StreamErrorCondition, text: str = "") -> bool:
        """Send its node the CLOSE; False when it was refused (Redis away)."""
        return self._directory._send_close(self.node, self.target, self.sid, condition, text)

    def __repr__(self) -> str:
        return f"<RemoteSession {self.full} on {self.node}>"


class ClusterSessionDirectory:
    """`SessionDirectory` over Redis (see the module docstring)."""

    def __init__(
        self,
        node: ClusterNode,
        hooks: Hooks,
        conflict: ResourceConflict,
        max_resources: int,
    ) -> None:
        self.node = node
        self.hooks = hooks
        self.conflict = conflict
        self.max_resources = max_resources
        self.local: dict[str, dict[str, C2SSession]] = {}
        #: the router's table: local sessions and `RemoteSession`s
        self.table: dict[str, dict[str, Any]] = {}
        self.forwarder = Forwarder(node, node.options.forward_queue_bytes, self._unheard)
        #: what stand-ins call per stanza (the forwarder's `send`, bound once)
        self._forward = self.forwarder.send
        #: a resync that failed, tried again (`_retry_resync`)
        self._resync_retry: asyncio.Task[None] | None = None
        #: availability presence refused while Redis was away: recipient full JID
        #: -> this node's senders (`_keep_missed`, `_tell_missed`)
        self._missed: dict[str, set[str]] = {}
        self._missed_pairs = 0
        #: False from a refusal until the cluster has resynchronised
        self._missed_open = True
        #: the cluster resynchronised while this node's resync was failing: the
        #: missed presence is told once a retry succeeds (not from a stale copy)
        self._tell_after_retry = False
        self._missed_timer: asyncio.TimerHandle | None = None
        #: account -> why its sessions end, for the closes Redis's absence refused
        #: (`close_sessions`, `_close_owed`)
        self._owed_closes: dict[str, tuple[StreamErrorCondition, str]] = {}
        #: which owed closes still hold once the outage is over (an account locked
        #: then unlocked meanwhile: no); set by the wiring, which reads accounts
        self.owed_check: OwedCheck | None = None
        #: the last refused presence and its sender (a broadcast refuses one
        #: stanza per recipient: its start tag is read once)
        self._last_refused: tuple[bytes, str | None] = (b"", None)
        self._sids: dict[int, str] = {}  # id(session) -> sid, for this node's sessions
        #: id(session) -> when it was bound here (`bound_at`)
        self._bound_at: dict[int, float] = {}
        #: this node's sessions by encoded full JID: where arriving frames go
        self._by_target: dict[bytes, C2SSession] = {}
        self._counter = itertools.count(1)
        #: every node's events channel is this prefix and its name
        self._events_prefix = node.key("events", "")
        self._nodes_key = node.key("nodes")
        #: this node's snapshot and every account's resources: keys of each login
        self._own_snapshot = node.key("sessions", node.name)
        self._res_prefix = node.key("res", "")
        self._policy = conflict.value
        self._warned: dict[str, tuple[float, int]] = {}  # kind -> (quiet until, skipped)
        #: closes that arrived for a claim of ours before its answer (sid -> why)
        self._early_closes: dict[str, tuple[str, str]] = {}
        #: sessions whose availability changed while the socket to Redis was full
        self._dirty: dict[int, C2SSession] = {}
        self._dirty_timer: asyncio.TimerHandle | None = None
        self._unsent_limit = node.options.forward_queue_bytes
        #: remote sessions waiting behind a session of this node on their resource
        self._shadowed: dict[tuple[str, str], RemoteSession] = {}
        #: the other nodes' changes heard while the mirror loads, applied after it
        self._held_events: list[bytes] | None = None
        self._held_bytes = 0
        #: nodes judged gone while the mirror loads: (how many changes were held by
        #: then, name, boot id); each leaves the mirror at that point of the replay
        self._gone_while_loading: list[tuple[int, str, str]] | None = None
        #: this node's sessions waiting to be resumed (XEP-0198), also kept in Redis
        #: ("bare/resource" -> sid) for the nodes that join or resynchronise
        self._asleep: set[C2SSession] = set()
        self._asleep_key = node.key("hibernated", node.name)
        #: the stand-ins of sessions waiting to be resumed on other nodes: what is
        #: written to them reaches no device (push wakes one).  Never replaced.
        self.hibernated_elsewhere: set[RemoteSession] = set()
        #: re-routes messages whose session is gone; set by the context
        self.reroute: Any = None
        self._background: set[asyncio.Future[Any]] = set()
        #: resyncs running (the copy is being read again: owed closes wait for it)
        self._resyncing = 0
        #: live sessions of ours whose resource another node held at the resync
        #: (`_contest`), by id(session)
        self._contests: dict[int, asyncio.Task[None]] = {}
        #: while a missed message is routed again: remote writes are marked REROUTED
        self.rerouting = False
        node.subscribe(self._events_prefix + node.name, self._event)
        node.subscribe(node.inbox, self._frames)
        node.on_node_gone(self._node_gone)
        node.on_reconnect(self._resync)
        node.on_resynced(self._resynced)

    # ------------------------------------------------------------ life

    async def start(self) -> None:
        await self._load_scripts()
        # What this node's previous run left (a kill -9, then a restart under the name).
        await self.node.run_script(
            _SCRIPTS["clear"],
            [self._own_snapshot],
            [self.node.prefix, self.node.name, ""],
        )
        await self.node.redis.delete(self._asleep_key)
        # Subscribed to this node's events channel before the snapshots are read:
        # what changes meanwhile reaches the channel, or is in a snapshot.
        await self.node.subscribed()
        await self._tell_lost(await self._load_mirror())

    async def _load_scripts(self) -> None:
        """Redis learns the scripts before they are needed: a claim decided here is
        confirmed with EVALSHA without waiting, and a NOSCRIPT answer (sent again
        with EVAL) would let the announcements sent after it overtake it."""
        for script in _SCRIPTS.values():
            await self.node.send("SCRIPT", "LOAD", script.source)

    async def close(self) -> None:
        """Stop, after announcing what is still queued (this node's sessions were
        closed just before: the others drop them now, not at the heartbeat's end)."""
        await self._stop_retrying()
        await self._stop_contests()
        if self._missed_timer is not None:
            self._missed_timer.cancel()
        await asyncio.sleep(0)  # the lean connection writes what is queued
        await self.forwarder.close()

    # ------------------------------------------------------------ claims

    def claim(self, session_for: SessionFactory, resource: str | None) -> asyncio.Future[Claimed]:
        """Decided by the claim script before the bind is answered, so the policy and
        `max_resources` hold exactly across nodes (an earlier version decided
        "newest" binds here and had Redis confirm them afterwards: ten binds racing
        over three nodes then bound six sessions of four allowed for an instant, and
        it saved 2% of a login's instructions).  A future, settled from the script's
        answer by `_ClaimInFlight`: a bind waits without a task or a coroutine."""
        decided: asyncio.Future[Claimed] = asyncio.get_running_loop().create_future()
        session = session_for(resource or _random_resource())
        _ClaimInFlight(self, decided, session_for, resource, session).ask()
        return decided

    def _session_keys(self, bare: str) -> tuple[str, str, str]:
        """KEYS of the scripts that change a session of `bare` here: res:BARE, this
        node's snapshot, the set of nodes."""
        return (self._res_prefix + bare, self._own_snapshot, self._nodes_key)

    def _claim_args(self, session: C2SSession, sid: str, chosen: bool) -> tuple[str | int, ...]:
        """The claim script's keys and arguments (`_CLAIM`)."""
        bare = session.bare
        return (
            *self._session_keys(bare),
            session.resource,
            sid,
            self._policy,
            self.max_resources,
            "1" if chosen else "0",
            bare,
            self._events_prefix,
            self.node.name,
        )

    def _new_sid(self) -> str:
        return f"{self.node.boot_id}{next(self._counter)}"

    def _bound(self, session: C2SSession, sid: str, held: str) -> Claimed:
        """The claim is ours.  A session of this node on the resource is replaced
        whoever Redis said held it (two claims racing from here and elsewhere may
        leave it without its entry); one held on another node is told to close, by
        its sid."""
        if held:
            node, _, old_sid = held.partition("|")
            if node != self.node.name:
                text = "replaced by a new connection"
                payload = f"{old_sid}\n{StreamErrorCondition.CONFLICT.value}\n{text}"
                self.forwarder.send(node, FrameKind.CLOSE, session.full.encode(), payload.encode())
        replaced = self.local.get(session.bare, {}).get(session.resource)
        if replaced is not None:
            self._drop_local(replaced)
        self._add_local(session, sid, supersedes=held)  # the claim script announced it
        early = self._early_closes.pop(sid, None)
        if early is not None:  # replaced already: bound, then closed at once
            condition, text = early
            asyncio.get_running_loop().call_soon(
                session.close, StreamErrorCondition(condition), text
            )
        return session, replaced

    # ------------------------------------------------------------ resumption

    def sid_of(self, session: C2SSession) -> str | None:
        """The directory's id of this node's bound `session` (None: not bound here).
        A resumption elsewhere names it, so only this very session is taken over."""
        return self._sids.get(id(session))

    async def take_over(
        self,
        session: C2SSession,
        node: str,
        sid: str,
        *,
        available: bool,
        priority: int,
        presence: Element | None,
        interested: bool,
    ) -> bool:
        """Bind here the session `node` holds under `sid` on the same full JID, with
        its presence state (XEP-0198 resumption across nodes; `cluster/sm_handover.py`).
        False, and nothing changed, when that node no longer holds it (ended,
        replaced meanwhile) or Redis cannot be asked: the resumption fails."""
        new_sid = f"{self.node.boot_id}{next(self._counter)}"
        session.available = available
        session.priority = priority
        session.presence = presence if available else None
        session.interested = interested
        serialized = serialize(presence) if available and presence is not None else None
        events = [self._event_of("C", session, new_sid)]
        if available:
            events.append(self._event_of("A", session, new_sid, serialized))
        if interested:
            events.append(self._event_of("I", session, new_sid))
        state = [new_sid, available, priority, serialized, interested]
        try:
            moved = await self.node.run_script(
                _SCRIPTS["take_over"],
                list(self._session_keys(session.bare)),
                [
                    session.resource,
                    f"{self.node.name}|{new_sid}",
                    f"{node}|{sid}",
                    f"{session.bare}/{session.resource}",
                    json.dumps(state),
                    self._events_prefix,
                    self.node.name,
                    "\n".join(events),
                ],
            )
        except (RedisError, RespError, OSError) as exc:
            log.info("cluster: %s not taken over from %s (Redis: %s)", session.full, node, exc)
            return False
        if not moved:
            return False
        replaced = self.local.get(session.bare, {}).get(session.resource)
        if replaced is not None:  # cannot be (node held it), but never two here
            self._drop_local(replaced)
        self._add_local(session, new_sid, supersedes=f"{node}|{sid}")
        return True

    def _claim_locally(
        self, session_for: SessionFactory, session: C2SSession, resource: str | None
    ) -> Claimed:
        """Redis is away: decide as one node would, by the same rules as
        `LocalSessionDirectory.claim` (the claim is made again on Redis's return)."""
        resources = self.local.get(session.bare, {})
        existing = resources.get(session.resource)
        replaced = None
        if existing is not None:
            if self.conflict is ResourceConflict.REJECT_NEW:
                raise ClaimRefused(StanzaErrorCondition.CONFLICT)
            if self.conflict is ResourceConflict.RANDOMIZE or resource is None:
                session = session_for(f"{session.resource}-{_random_resource()[:8]}")
            else:
                replaced = existing
        if replaced is None and len(resources) >= self.max_resources:
            raise ClaimRefused(StanzaErrorCondition.RESOURCE_CONSTRAINT, "too many resources")
        if replaced is not None:
            self._drop_local(replaced)
        sid = f"{self.node.boot_id}{next(self._counter)}"
        self._add_local(session, sid)
        return session, replaced

    def _add_local(self, session: C2SSession, sid: str, *, supersedes: str | None = None) -> None:
        """`session` bound here under `sid`.  `supersedes`: the "node|sid" Redis said
        this claim replaced ('' for none; None: decided here alone, Redis away).

        A remote session the table holds under any other claim is not dropped but
        waits behind ours (`_shadowed`, as `_apply` does for a claim heard while ours
        is bound).  Its C event may have been read before our claim's answer though
        Redis ran its claim after ours (events and answers come on two connections):
        it is then the newest session, its node closes ours, and it must be what this
        node delivers to once ours is released -- overwritten, the full JID had no
        entry here at all while bound on that node (messages from here stored offline
        instead).  An older one waiting there is removed by its release's R event."""
        self.local.setdefault(session.bare, {})[session.resource] = session
        entries = self.table.setdefault(session.bare, {})
        current = entries.get(session.resource)
        if (
            supersedes is not None
            and isinstance(current, RemoteSession)
            and f"{current.node}|{current.sid}" != supersedes
        ):
            self._shadowed[(session.bare, session.resource)] = current
        elif isinstance(current, RemoteSession):
            self.hibernated_elsewhere.discard(current)  # replaced (resumed here, say)
        entries[session.resource] = session
        self._sids[id(session)] = sid
        self._bound_at[id(session)] = time.time()
        self._by_target[session.full.encode()] = session

    def _drop_local(self, session: C2SSession) -> str | None:
        resources = self.local.get(session.bare)
        if resources is None or resources.get(session.resource) is not session:
            return None
        del resources[session.resource]
        if not resources:
            del self.local[session.bare]
        entries = self.table.get(session.bare)
        if entries is not None and entries.get(session.resource) is session:
            waiting = self._shadowed.pop((session.bare, session.resource), None)
            if waiting is not None:
                entries[session.resource] = waiting  # the session that replaced it
            else:
                del entries[session.resource]
                if not entries:
                    del self.table[session.bare]
        target = session.full.encode()
        if self._by_target.get(target) is session:
            del self._by_target[target]
        if session in self._asleep:  # released, or replaced by a new bind here
            self._asleep.discard(session)
            self._forget_asleep(session)
        self._bound_at.pop(id(session), None)
        return self._sids.pop(id(session), None)

    def bound_at(self, session: C2SSession) -> float | None:
        """When this node's `session` was bound here (wall clock), None if it is not."""
        return self._bound_at.get(id(session))

    def release(self, session: C2SSession) -> None:
        """Gone from this node at once; the release script (which announces it)
        is sent without a task or an await: a logout costs one command."""
        sid = self._drop_local(session)
        if sid is None:
            return
        self.node.call(
            pack("EVALSHA", _RELEASE_SHA, 3, *self._release_args(session, sid)),
            partial(self._released, session, sid),
            deferrable=True,
        )

    def _release_args(self, session: C2SSession, sid: str) -> tuple[str, ...]:
        """The release script's keys and arguments (`_RELEASE`)."""
        bare = session.bare
        return (
            *self._session_keys(bare),
            session.resource,
            sid,
            bare,
            self._events_prefix,
            self.node.name,
        )

    def _released(self, session: C2SSession, sid: str, answer: Any) -> None:
        if not isinstance(answer, Exception):
            return
        if isinstance(answer, RespError) and str(answer).startswith("NOSCRIPT"):
            # Redis restarted and forgot the script: once more, with its source.
            args = self._release_args(session, sid)
            command = pack("EVAL", _SCRIPTS["release"].source, 3, *args)
            self.node.call(command, partial(self._released, session, sid))
            return
        self._warn("release", "cluster: releases left to the resync (Redis: %s)", answer)

    # ------------------------------------------------------------ availability

    def mark_available(self, session: C2SSession, priority: int, presence: Element) -> None:
        session.available = True
        session.priority = priority
        session.presence = presence
        sid = self._announced_sid(session)
        if sid is not None:
            self._announce("A", session, sid)

    def mark_unavailable(self, session: C2SSession) -> None:
        session.available = False
        session.presence = None
        sid = self._announced_sid(session)
        if sid is not None:
            self._announce("U", session, sid)

    def mark_interested(self, session: C2SSession) -> None:
        session.interested = True
        sid = self._announced_sid(session)
        if sid is not None:
            self._announce("I", session, sid)

    def mark_hibernated(self, session: C2SSession, hibernated: bool) -> None:
        """Kept in this node's hash of waiting sessions and announced (H, or W when
        resumed), so the node of a message's sender knows no device got it."""
        if self._sids.get(id(session)) is None:
            return
        if hibernated:
            self._asleep.add(session)
        elif session in self._asleep:
            self._asleep.discard(session)
        else:
            return
        sid = self._announced_sid(session)
        if sid is None:
            return  # written with its claim, if its contest is won
        if hibernated:
            self._keep_asleep(session, sid)
        else:
            self._forget_asleep(session)
        self._announce("H" if hibernated else "W", session, sid, snapshot=False)

    def _announced_sid(self, session: C2SSession) -> str | None:
        """The sid under which a change of this node's `session` is announced; None
        when it is not ours, or while its resource is contested (`_contest`): the
        others must not take it for the resource's holder before it has won, and
        it announces its whole state then."""
        if self._contests and id(session) in self._contests:
            return None
        return self._sids.get(id(session))

    def _keep_asleep(self, session: C2SSession, sid: str) -> None:
        field = f"{session.bare}/{session.resource}"
        self.node.send("HSET", self._asleep_key, field, sid, deferrable=True).add_done_callback(
            _quiet
        )

    def _forget_asleep(self, session: C2SSession) -> None:
        field = f"{session.bare}/{session.resource}"
        self.node.send("HDEL", self._asleep_key, field, deferrable=True).add_done_callback(_quiet)

    # ------------------------------------------------------------ questions

    def is_bound(self, session: C2SSession) -> bool:
        resources = self.local.get(session.bare)
        return resources is not None and resources.get(session.resource) is session

    def bound_here(self, bare: str) -> bool:
        return bare in self.local

    def bound_anywhere(self, bare: str) -> bool:
        return bare in self.table

    def close_sessions(self, bare: str, condition: StreamErrorCondition, text: str) -> int:
        """This node's sessions close at once; the others' nodes are sent a CLOSE.
        Without Redis (a close refused, or this node's copy possibly stale: a
        session bound elsewhere meanwhile is not in it) the account is kept and
        its sessions elsewhere are closed once the cluster has resynchronised
        (`_close_owed`): a deletion or a lock during an outage must not leave a
        session on another node for good."""
        sessions = list(self.table.get(bare, {}).values())
        here = [s for s in sessions if not isinstance(s, RemoteSession)]
        for session in here:
            session.close(condition, text)
        if not self._close_elsewhere(sessions, condition, text) or not self.node.connected:
            self._owe_close(bare, condition, text)
        return len(here)

    @staticmethod
    def _close_elsewhere(
        sessions: list[C2SSession], condition: StreamErrorCondition, text: str
    ) -> bool:
        """A CLOSE for each of `sessions` on another node; False when one was
        refused."""
        sent = True
        for session in sessions:
            if isinstance(session, RemoteSession):
                sent = session.close(condition, text) and sent
        return sent

    def _owe_close(self, bare: str, condition: StreamErrorCondition, text: str) -> None:
        owed = self._owed_closes
        owed.pop(bare, None)
        owed[bare] = (condition, text)
        if len(owed) > OWED_CLOSES:
            dropped = next(iter(owed))
            del owed[dropped]
            log.warning(
                "cluster: more than %d accounts' sessions wait to be closed after the"
                " outage: %s's sessions on other nodes are not",
                OWED_CLOSES,
                dropped,
            )

    def _close_owed(self) -> None:
        """The closes Redis's absence refused, sent to the sessions the resynchronised
        copy knows on other nodes (this node's own closed at once), for the
        accounts `owed_check` says they still hold for."""
        owed, self._owed_closes = self._owed_closes, {}
        if not owed:
            return
        task = asyncio.ensure_future(self._send_owed(owed))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_owed(self, owed: dict[str, tuple[StreamErrorCondition, str]]) -> None:
        check = self.owed_check
        try:
            holding = set(owed) if check is None else await check(owed)
        except Exception:
            log.exception("cluster: the owed closes could not be checked: all are sent")
            holding = set(owed)
        if not self.node.connected or self._resync_retry is not None or self._resyncing:
            # Redis lost again, or the copy being read again: the next resync sends them
            for bare in holding:
                self._owe_close(bare, *owed[bare])
            return
        for bare in holding:
            sessions = list(self.table.get(bare, {}).values())
            if not self._close_elsewhere(sessions, *owed[bare]):
                self._owe_close(bare, *owed[bare])  # lost again: next time
        if holding:
            log.info("cluster: sessions of %d accounts closed after the outage", len(holding))

    def sessions_elsewhere(self) -> list[RemoteSession]:
        """Every session on the other nodes (administration's cluster-wide list)."""
        return [
            s
            for entries in self.table.values()
            for s in entries.values()
            if isinstance(s, RemoteSession)
        ]

    # ------------------------------------------------------------ announcing

    def _announce(
        self, op: str, session: C2SSession, sid: str, *, snapshot: bool | None = None
    ) -> None:
        """Tell the other nodes of a change of this node's `session`, and keep this
        node's snapshot (which the claim and release scripts keep themselves, so C
        and R write it only when asked: a resync).  Sent on the lean connection at
        once, so a login's claim, snapshot and event share its writes; the
        connection keeps them in order."""
        if snapshot is None and op in ("A", "U", "I") and self.node.unsent() > self._unsent_limit:
            # Redis slow or frozen: keep only that this session changed, and send its
            # state as it is then once the socket has drained (bounded however
            # often presence changes meanwhile).
            self._dirty[id(session)] = session
            if self._dirty_timer is None:
                loop = asyncio.get_running_loop()
                self._dirty_timer = loop.call_later(DIRTY_RETRY, self._announce_dirty)
            return
        shown = (
            serialize(session.presence)
            if session.available and session.presence is not None
            else None
        )
        presence = shown if op == "A" else None
        send = self.node.send
        if snapshot if snapshot is not None else op not in ("C", "R"):
            field = f"{session.bare}/{session.resource}"
            # The session's whole state, whatever changed: an entry written for an
            # interest (I) after the presence (A) once lost the presence, and a
            # node reading it then (a join, a resync) showed the session as
            # available with no presence.
            state = [sid, session.available, session.priority, shown, session.interested]
            key = self._own_snapshot
            send("HSET", key, field, json.dumps(state), deferrable=True).add_done_callback(_quiet)
        event = self._event_of(op, session, sid, presence)
        script = _SCRIPTS["announce"]
        send(
            "EVALSHA",
            script.sha,
            1,
            self._nodes_key,
            self._events_prefix,
            self.node.name,
            event,
            deferrable=True,
        ).add_done_callback(self._announced)

    def _event_of(self, op: str, session: C2SSession, sid: str, presence: str | None = None) -> str:
        """One change as the other nodes read it (`_event`)."""
        return json.dumps(
            [self.node.name, op, sid, session.bare, session.resource, session.priority, presence]
        )

    def _announce_dirty(self) -> None:
        self._dirty_timer = None
        if self.node.unsent() > self._unsent_limit:
            loop = asyncio.get_running_loop()
            self._dirty_timer = loop.call_later(DIRTY_RETRY, self._announce_dirty)
            return
        dirty, self._dirty = self._dirty, {}
        for session in dirty.values():
            sid = self._sids.get(id(session))
            if sid is None:
                continue  # released meanwhile (its release was announced)
            self._announce("A" if session.available else "U", session, sid, snapshot=True)
            if session.interested:
                self._announce("I", session, sid, snapshot=True)

    def _announced(self, reply: asyncio.Future[Any]) -> None:
        if reply.cancelled() or reply.exception() is None:
            return
        self._warn(
            "announce",
            "cluster: session changes not announced (%s): resync when Redis returns",
            reply.exception(),
        )

    # ------------------------------------------------------------ the mirror

    def _event(self, data: bytes) -> None:
        """Another node's session changes (published to this node's channel only).
        While the mirror loads they are held, and applied once it has loaded."""
        held = self._held_events
        if held is not None:
            if self._held_bytes + len(data) <= MAX_HELD_EVENT_BYTES:
                held.append(data)
            self._held_bytes += len(data)  # past the bound: counted, read again
            return
        for line in data.decode(errors="replace").split("\n"):
            event = _read_event(line)
            if event is None:
                self._warn(
                    "unreadable", "cluster: an unreadable session change ignored: %.200r", line
                )
                continue
            node, op, sid, bare, resource, priority, presence = event
            self._apply(op, node, sid, bare, resource, priority, presence)

    def _apply(
        self,
        op: str,
        node: str,
        sid: str,
        bare: str,
        resource: str,
        priority: int,
        presence: str | None,
        *,
        available: bool | None = None,
        interested: bool = False,
    ) -> None:
        entries = self.table.get(bare)
        current = entries.get(resource) if entries is not None else None
        # A session of this node on the same resource, told to close by the claim
        # that replaced it, stays in the table until it is released here; the new
        # remote session waits behind it (`_shadowed`) and takes its place then.
        shadowing = isinstance(current, C2SSession)
        if shadowing:
            current = self._shadowed.get((bare, resource))
        if op == "R":
            if isinstance(current, RemoteSession) and current.sid == sid:
                self.hibernated_elsewhere.discard(current)
                if shadowing:
                    del self._shadowed[(bare, resource)]
                else:
                    assert entries is not None
                    del entries[resource]
                    if not entries:
                        del self.table[bare]
            return
        if not (isinstance(current, RemoteSession) and current.sid == sid):
            if op != "C" and available is None:
                return  # a change of a session this node never saw claimed
            if current is not None:
                self.hibernated_elsewhere.discard(current)
            current = RemoteSession(self, node, sid, bare, resource)
            if shadowing:
                self._shadowed[(bare, resource)] = current
            else:
                self.table.setdefault(bare, {})[resource] = current
        if op == "A":
            current.available = True
            current.priority = priority
            current.presence = _parse(presence)
        elif op == "U":
            current.available = False
            current.presence = None
        elif op == "I":
            current.interested = True
        elif op == "H":
            self.hibernated_elsewhere.add(current)
        elif op == "W":
            self.hibernated_elsewhere.discard(current)
        if available is not None:
            current.available = available
            current.priority = priority
            current.presence = _parse(presence) if available else None
            current.interested = interested
        if self._missed and self._missed_open and current.available:
            self._tell_missed(current.full)  # back after the outage, available

    async def _load_mirror(self) -> list[RemoteSession]:
        """Every other node's sessions, from their snapshots (joining, resyncing);
        returns the sessions of nodes judged gone meanwhile (for `_tell_lost`).

        Changes published meanwhile are held, then applied in order on top of
        the snapshots: a snapshot read after a change already shows it, and
        applying the change again is harmless (each event sets a state, or adds or
        removes one sid), whereas skipping the session (an earlier version did,
        for any session a change named during the load) hid a session whose
        presence changed while a node joined.  Past `MAX_HELD_EVENT_BYTES` of
        changes the snapshots are read again instead (at most `MIRROR_READS`
        times), so a join during a storm of changes holds bounded memory."""
        gone: list[tuple[int, str, str]] = []
        lost: list[RemoteSession] = []
        for attempt in range(1, MIRROR_READS + 1):
            if attempt > 1:
                self._forget_mirror()  # what was dropped may have removed something
            self._held_events, self._held_bytes = [], 0
            # A node judged gone during an earlier read leaves right after the snapshots.
            self._gone_while_loading = [(0, node, boot) for _, node, boot in gone]
            try:
                await self._read_snapshots()
            finally:
                held, self._held_events = self._held_events, None
                gone, self._gone_while_loading = self._gone_while_loading or [], None
                overflowed = self._held_bytes > MAX_HELD_EVENT_BYTES
            lost += self._replay(held, gone)
            if not overflowed:
                return lost
            log.warning(
                "cluster: %d bytes of session changes arrived while the mirror loaded"
                " (over %d): the snapshots are read again (%d of %d)",
                self._held_bytes,
                MAX_HELD_EVENT_BYTES,
                attempt,
                MIRROR_READS,
            )
        log.error(
            "cluster: the mirror of other nodes' sessions may miss changes until the"
            " next resync: too many changes while it loaded"
        )
        return lost

    def _replay(self, held: list[bytes], gone: list[tuple[int, str, str]]) -> list[RemoteSession]:
        """The changes held during a load, in order, with each node judged gone
        meanwhile removed where it was judged: its earlier changes do not bring its
        sessions back, and its later ones (it beat again) are kept, as on a node
        that was not loading.  No await: nothing may come in between."""
        lost: list[RemoteSession] = []
        waiting = sorted(gone, key=lambda entry: entry[0])
        for index, data in enumerate(held):
            while waiting and waiting[0][0] <= index:
                _, node, boot = waiting.pop(0)
                lost += self._lose(node, boot)
            self._event(data)
        for _, node, boot in waiting:
            lost += self._lose(node, boot)
        return lost

    async def _read_snapshots(self) -> None:
        for name in [n for n in self.node.others if n != self.node.name]:
            entries = await self.node.redis.hgetall(self._snapshot_key(name))
            for raw_field, raw_value in entries.items():
                bare, slash, resource = _text(raw_field).partition("/")
                entry = _read_entry(raw_value)
                if entry is None or not slash:
                    self._warn(
                        "unreadable",
                        "cluster: an unreadable entry of node %s's sessions ignored: %.200r",
                        name,
                        raw_value,
                    )
                    continue
                sid, available, priority, presence, interested = entry
                self._apply(
                    "C",
                    name,
                    sid,
                    bare,
                    resource,
                    priority,
                    presence,
                    available=bool(available),
                    interested=bool(interested),
                )
            asleep = await self.node.redis.hgetall(self.node.key("hibernated", name))
            for raw_field, raw_sid in asleep.items():
                bare, _, resource = _text(raw_field).partition("/")
                current = self.table.get(bare, {}).get(resource)
                if isinstance(current, C2SSession):  # one of ours; the remote waits behind
                    current = self._shadowed.get((bare, resource))
                if isinstance(current, RemoteSession) and current.sid == _text(raw_sid):
                    self.hibernated_elsewhere.add(current)

    def _remove_node(self, node: str, boot: str = "") -> list[RemoteSession]:
        """The node's sessions leave the mirror (those of its run `boot` only, when
        given: a node restarted under its name may have new ones already)."""
        lost: list[RemoteSession] = []
        for bare in list(self.table):
            entries = self.table[bare]
            for resource, session in list(entries.items()):
                if (
                    isinstance(session, RemoteSession)
                    and session.node == node
                    and session.sid.startswith(boot)
                ):
                    del entries[resource]
                    lost.append(session)
            if not entries:
                del self.table[bare]
        for key, waiting in list(self._shadowed.items()):
            if waiting.node == node and waiting.sid.startswith(boot):
                del self._shadowed[key]
                lost.append(waiting)
        return lost

    async def _node_gone(self, node: str) -> None:
        departed = self.node.departed.get(node)
        boot = departed.decode() if departed is not None else ""
        loading = self._gone_while_loading
        if loading is not None and self._held_events is not None:
            # The mirror is loading: the node leaves it at this point of the replay.
            loading.append((len(self._held_events), node, boot))
        else:
            await self._tell_lost(self._lose(node, boot))
        if boot:
            try:
                await self.node.run_script(
                    _SCRIPTS["clear"], [self._snapshot_key(node)], [self.node.prefix, node, boot]
                )
                await self.node.run_script(
                    _SCRIPTS["clear_asleep"], [self.node.key("hibernated", node)], [boot]
                )
            except (RedisError, RespError, OSError) as exc:
                log.warning("cluster: entries of node %s left in Redis (%s)", node, exc)

    def _lose(self, node: str, boot: str) -> list[RemoteSession]:
        """The sessions of `node`'s run `boot` leave the mirror (`_tell_lost` next)."""
        lost = self._remove_node(node, boot)
        self.hibernated_elsewhere.difference_update(lost)
        log.info("cluster: %d sessions of node %s left the directory", len(lost), node)
        return lost

    async def _tell_lost(self, lost: list[RemoteSession]) -> None:
        """Contacts here see each lost session go unavailable (the presence module)."""
        for session in lost:
            await self.hooks.notify(
                RemoteSessionLost(session.full, session.bare, session.available)
            )

    async def _resync(self) -> None:
        """Redis is back (perhaps empty): claim this node's sessions again, rewrite
        and announce its snapshot, and rebuild the mirror from the others'.  One
        that fails part-way (Redis refusing writes, out of memory) is tried again
        while Redis stays reachable (`_retry_resync`): a mirror left half read
        would hide sessions until the next outage."""
        await self._stop_retrying()
        if not await self._try_resync():
            self._resync_retry = asyncio.create_task(self._retry_resync(), name="cluster-resync")

    async def _try_resync(self) -> bool:
        self._resyncing += 1
        try:
            await self._reassert_and_reload()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._warn(
                "resync",
                "cluster: resynchronisation failed (%r): tried again in a moment",
                exc,
            )
            return False
        finally:
            self._resyncing -= 1
        return True

    async def _retry_resync(self) -> None:
        """Try the resync again, waiting longer each time (up to
        `RESYNC_RETRY_MAX`), until it succeeds; a lost connection ends this (the
        reconnection resyncs).  Missed presence waits for its success."""
        delay = RESYNC_RETRY
        while True:
            await asyncio.sleep(delay)
            if not self.node.connected:
                return
            if await self._try_resync():
                self._resync_retry = None
                if self._tell_after_retry:
                    self._tell_after_retry = False
                    self._resynced()
                return
            delay = min(delay * 2, RESYNC_RETRY_MAX)

    async def _stop_retrying(self) -> None:
        """End a retry in progress, and wait until it has (its load's `finally`
        must not run in the middle of the next one)."""
        retry, self._resync_retry = self._resync_retry, None
        self._tell_after_retry = False  # the next resync ends with its own telling
        if retry is not None and retry is not asyncio.current_task():
            retry.cancel()
            await asyncio.wait([retry])  # not `await retry`: ours may be cancelled too

    async def _reassert_and_reload(self) -> None:
        redis = self.node.redis
        await self._load_scripts()  # a restarted Redis has forgotten them
        # A Redis that kept its data (a network cut, a restart from its dump) still
        # holds claims of sessions that ended meanwhile: this run's go first, then
        # the live ones are claimed again.
        await self.node.run_script(
            _SCRIPTS["clear"],
            [self._own_snapshot],
            [self.node.prefix, self.node.name, self.node.boot_id],
        )
        await self._stop_contests()  # decided again below
        await redis.delete(self._own_snapshot)
        # The waiting sessions' entries stay until each is claimed again with its
        # entry (a session that ended meanwhile loses it below): another node's
        # reassert must see that a claim it meets is a waiting session's.
        stale_asleep = {_text(f) for f in await redis.hkeys(self._asleep_key)}
        for resources in list(self.local.values()):
            for session in list(resources.values()):
                sid = self._sids.get(id(session))
                if sid is None:
                    continue
                ours = await self._reassert(session, sid)
                if self._sids.get(id(session)) != sid:
                    continue  # released meanwhile: its release, sent after, undid this
                if not self._won(session, ours):
                    if self._takes_over(session):
                        # The holder may be a session that began waiting during the
                        # outage, which its node records only at its own resync.
                        self._start_contest(session, sid)
                    else:
                        session.close(StreamErrorCondition.CONFLICT, _BOUND_ELSEWHERE)
                    continue
                self._reannounce(session, sid)
        # Entries of sessions that ended or woke meanwhile (not of one asleep now:
        # its entry was written with its claim, or by its hibernation since).
        stale_asleep -= {s.full for s in self._asleep}
        if stale_asleep:
            # on the lean connection, in order with the entries hibernations write
            await self.node.send("HDEL", self._asleep_key, *sorted(stale_asleep))
        self._forget_mirror()
        await self._tell_lost(await self._load_mirror())

    async def _reassert(self, session: C2SSession, sid: str) -> Any:
        """`_REASSERT` for one of this node's sessions (see the script)."""
        return await self.node.run_script(
            _SCRIPTS["reassert"],
            [self._res_key(session.bare), self._asleep_key],
            [
                session.resource,
                f"{self.node.name}|{sid}",
                self.node.key("hibernated", "") if self._takes_over(session) else "",
                session.full,
                sid if session in self._asleep else "",
            ],
        )

    def _takes_over(self, session: C2SSession) -> bool:
        """Under the default policy a live session takes its resource back from one
        waiting to be resumed elsewhere; never from a live one, nor the reverse."""
        return self.conflict is ResourceConflict.NEWEST_WINS and session not in self._asleep

    def _won(self, session: C2SSession, ours: Any) -> bool:
        """Whether `_REASSERT` gave `session` its resource (closing the waiting
        session it took it from, if any)."""
        if isinstance(ours, bytes):
            self._close_replaced(session, ours.decode())
            return True
        return bool(ours)

    def _reannounce(self, session: C2SSession, sid: str) -> None:
        """Every state, not only the set ones: the others kept their copies through
        the outage, and a change announced during it was lost."""
        self._announce("C", session, sid, snapshot=True)
        self._announce("A" if session.available else "U", session, sid)
        if session.interested:
            self._announce("I", session, sid)
        asleep = session in self._asleep
        self._announce("H" if asleep else "W", session, sid, snapshot=False)

    def _start_contest(self, session: C2SSession, sid: str) -> None:
        key = id(session)
        task = asyncio.ensure_future(self._contest(session, sid))
        self._contests[key] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._contests.get(key) is finished:
                del self._contests[key]

        task.add_done_callback(done)

    async def _contest(self, session: C2SSession, sid: str) -> None:
        """A live session of ours whose resource another node's session held when we
        claimed it again: if that node's resync shows its session waiting to be
        resumed (or releases it), ours takes the resource, as a bind would have;
        once that node is settled since the outage began (`_holder_settled`)
        and still holds it live, or after `CONTEST_WAIT`, ours is closed with
        conflict, as for any resource bound twice during an outage.  Meanwhile
        ours stays bound here, unannounced (`_announced_sid`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONTEST_WAIT
        while loop.time() < deadline:
            await asyncio.sleep(CONTEST_RETRY)
            if self._sids.get(id(session)) != sid:
                return  # it ended meanwhile
            if not self.node.connected:
                continue
            try:
                # Read first: a holder that resynced before the claim below has
                # its final claim (and its waiting sessions' entries) in place.
                settled = await self._holder_settled(session)
                ours = await self._reassert(session, sid)
            except (RedisError, RespError, ConnectionError, OSError, ClusterUnavailable):
                continue
            if self._sids.get(id(session)) != sid:
                return
            if not self._won(session, ours):
                if settled:
                    break
                continue
            self._contests.pop(id(session), None)  # announced from now on
            self._reannounce(session, sid)
            return
        if self._sids.get(id(session)) == sid:
            session.close(StreamErrorCondition.CONFLICT, _BOUND_ELSEWHERE)

    async def _holder_settled(self, session: C2SSession) -> bool:
        """Whether the node holding `session`'s resource has its claims final since
        this node's loss of Redis: its heartbeat's "settled" mark, which stops
        moving from its own loss until its resync is done, is newer than that
        loss (a node that never lost Redis: at its next heartbeat)."""
        held = await self.node.send("HGET", self._res_key(session.bare), session.resource)
        if held is None:
            return False  # nobody holds it: the next claim wins
        node = _text(held).partition("|")[0]
        mark = await self.node.send("GET", self.node.settled_key(node))
        try:
            return mark is not None and float(_text(mark)) >= self.node.lost_at + SETTLED_MARGIN
        except ValueError:
            return False

    async def _stop_contests(self) -> None:
        contests = list(self._contests.values())
        self._contests.clear()
        for task in contests:
            task.cancel()
        if contests:
            await asyncio.wait(contests)  # a cancel of the caller still reaches it

    def _close_replaced(self, session: C2SSession, held: str) -> None:
        """`session` took its resource back from a session waiting to be resumed on
        another node (`_REASSERT`): that one is closed there with conflict, as a
        bind replacing it would have."""
        node, _, sid = held.partition("|")
        condition, text = StreamErrorCondition.CONFLICT, "the resource was bound again elsewhere"
        if not self._send_close(node, session.full.encode(), sid, condition, text):
            log.warning("cluster: cannot close %s on node %s (replaced)", session.full, node)

    def _send_close(
        self, node: str, target: bytes, sid: str, condition: StreamErrorCondition, text: str
    ) -> bool:
        """A CLOSE for `node`'s session `target` under `sid` (a late CLOSE must not
        end a newer session of the same full JID); False when refused."""
        payload = f"{sid}\n{condition.value}\n{text}".encode()
        return self.forwarder.send(node, FrameKind.CLOSE, target, payload)

    def _forget_mirror(self) -> None:
        """Every other node's session leaves the mirror (read again next)."""
        self.hibernated_elsewhere.clear()
        for bare in list(self.table):
            entries = self.table[bare]
            for resource, session in list(entries.items()):
                if isinstance(session, RemoteSession):
                    del entries[resource]
            if not entries:
                del self.table[bare]
        self._shadowed.clear()

    # ------------------------------------------------------------ arriving frames

    def _frames(self, batch: bytes) -> None:
        """A batch from another node: each stanza written to its session here.  The
        per-stanza path of cross-node delivery, so no object per frame: the header
        read in place, the session found by the target's bytes."""
        sessions = self._by_target
        offset = 0
        end = len(batch)
        delivered = 0
        while offset + HEADER_SIZE <= end:
            kind, target_len, payload_len = unpack_header(batch, offset)
            start = offset + HEADER_SIZE
            offset = start + target_len + payload_len
            if offset > end:
                log.warning("cluster: a truncated forwarded frame was dropped")
                break
            target = batch[start : start + target_len]
            payload = batch[start + target_len : offset]
            session = sessions.get(target)
            if kind == _STANZA and session is not None:
                delivered += 1
                session.write(payload)
                continue
            self._arrived(Frame(KINDS[kind], target.decode(), payload), session)
        STANZAS.sent += delivered

    def _arrived(self, frame: Frame, session: C2SSession | None) -> None:
        """A frame that is not a plain stanza for a session here."""
        if frame.kind is FrameKind.CLOSE:
            sid, _, rest = frame.payload.decode().partition("\n")
            condition, _, text = rest.partition("\n")
            if session is not None and self._sids.get(id(session)) == sid:
                session.close(StreamErrorCondition(condition), text)
            elif sid.startswith(self.node.boot_id):
                # A claim of ours replaced before its answer reached us (the close
                # came on the other connection first): closed once it is bound.
                self._early_closes[sid] = (condition, text)
                while len(self._early_closes) > EARLY_CLOSES:
                    del self._early_closes[next(iter(self._early_closes))]
            return
        if session is not None:
            STANZAS.sent += 1
            session.write(frame.payload)
            return
        if frame.kind is FrameKind.STANZA and self._to_moved(frame):
            return
        if frame.payload.startswith(b"<message"):
            self._message_missed(frame, again=frame.kind is FrameKind.STANZA)

    def _to_moved(self, frame: Frame) -> bool:
        """A stanza for a full JID whose session left this node for another one
        (resumed there, XEP-0198; or bound there anew): sent on to it, once (marked
        rerouted), as RFC 6121 §8.5.3.1 delivers to a connected resource.  True
        when sent."""
        bare, _, resource = frame.full.partition("/")
        entries = self.table.get(bare)
        moved = entries.get(resource) if entries is not None else None
        if not isinstance(moved, RemoteSession) or moved.node == self.node.name:
            return False
        return bool(self._forward(moved.node, FrameKind.REROUTED, moved.target, frame.payload))

    def refused(self, data: bytes, recipient: str) -> None:
        """A stanza for `recipient` the forwarder refused (Redis away, queue full):
        the sender of a message or of an IQ request learns it was not delivered,
        with resource-constraint (type wait: try again later, RFC 6120 §8.3.3.18),
        rather than losing it silently; an availability presence refused while
        Redis is unreachable is noted (`_keep_missed`); other presence and replies
        are dropped.  A stanza over `ECHO_LIMIT` bytes comes back without its
        payload (RFC 6120 §8.3.1 allows either), only its start tag read again: a
        refused flood of big stanzas is not echoed back."""
        if data.startswith(b"<presence"):
            if not self.node.connected:  # a full queue (Redis slow) drops it
                self._keep_missed(recipient, data)
            return
        if not (data.startswith(b"<message") or data.startswith(b"<iq")):
            return
        if len(data) <= ECHO_LIMIT:
            head = data  # clients match errors by the payload they sent (a body)
        else:
            start = _start_tag(data)
            if start is None:
                return
            head = start
        try:
            stanza = parse_fragment(head)
            sender = JID.parse(stanza.attrs.get("from", ""))
        except Exception:  # what we serialized ourselves: nothing to answer
            return
        kind = stanza.attrs.get("type", "")
        if kind == "error" or (stanza.name == "iq" and kind not in ("get", "set")):
            return
        reply = error_reply(
            stanza,
            StanzaErrorCondition.RESOURCE_CONSTRAINT,
            "the recipient's server node cannot be reached now",
        )
        resources = self.local.get(f"{sender.local}@{sender.domain}")
        session = resources.get(sender.resource) if resources is not None else None
        if session is not None:  # a sender on another node is told by nobody
            session.send(reply)

    # ------------------------------------------------------------ missed presence

    def _keep_missed(self, recipient: str, data: bytes) -> None:
        """Note that `recipient` missed an availability change of this node's
        sender of `data`: who, not what (what is sent is the sender's presence
        when it is told, so nothing stale can arrive).  Bounded in pairs."""
        self._missed_open = False
        last, sender = self._last_refused
        if data is not last:
            sender = _availability_sender(data)
            self._last_refused = (data, sender)
        if sender is None:
            return
        senders = self._missed.get(recipient)
        if senders is not None and sender in senders:
            return
        if self._missed_pairs >= MISSED_PAIRS:
            self._warn(
                "missed",
                "cluster: over %d presence changes refused for other nodes: the rest"
                " is not told when Redis returns",
                MISSED_PAIRS,
            )
            return
        if senders is None:
            senders = self._missed[recipient] = set()
        senders.add(sender)
        self._missed_pairs += 1

    def _resynced(self) -> None:
        """Every shared state is read again (block lists, rosters, the mirror):
        each recipient known and available now is told what it missed; one that
        comes back later when its node announces it available (`_apply`); what is
        left `MISSED_TTL` seconds from now is forgotten."""
        if self._resync_retry is not None:
            self._tell_after_retry = True  # the copy is not read yet
            return
        self._close_owed()
        self._missed_open = True
        for recipient in list(self._missed):
            self._tell_missed(recipient)
        if self._missed_timer is not None:
            self._missed_timer.cancel()
            self._missed_timer = None
        if self._missed:
            loop = asyncio.get_running_loop()
            self._missed_timer = loop.call_later(MISSED_TTL, self._forget_missed)

    def _tell_missed(self, recipient: str) -> None:
        bare, _, resource = recipient.partition("/")
        entries = self.table.get(bare)
        session = entries.get(resource) if entries is not None else None
        if session is None or not session.available:
            return
        senders = self._missed.pop(recipient, None)
        if senders is None:
            return
        self._missed_pairs -= len(senders)
        for sender in sorted(senders):
            pending = self.hooks.notify(PresenceMissed(sender, recipient))
            task = asyncio.ensure_future(pending)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _forget_missed(self) -> None:
        self._missed_timer = None
        if not self._missed_open:
            return  # another outage: told after it
        dropped = self._missed_pairs
        self._missed.clear()
        self._missed_pairs = 0
        if dropped:
            log.info(
                "cluster: %d presence changes refused during the outage not told:"
                " their recipients did not come back",
                dropped,
            )

    def _unheard(self, node: str, frames: list[Frame]) -> None:
        """A node that heard nothing is dead or cut off: its messages are routed
        again here (once: offline storage, unless its user has a resource on
        another node).  Its sessions stay in the mirror until its heartbeat
        expires (`_node_gone`), which also tells their contacts."""
        self._warn("unheard", "cluster: node %s did not answer: its messages are routed here", node)
        for frame in frames:
            if frame.kind is not FrameKind.CLOSE and frame.payload.startswith(b"<message"):
                self._message_missed(frame, again=frame.kind is FrameKind.STANZA)

    def _message_missed(self, frame: Frame, *, again: bool) -> None:
        try:
            stanza = parse_fragment(frame.payload)
            to = JID.parse(frame.full)
        except Exception:  # what we serialized ourselves: log and drop
            log.warning("cluster: a forwarded message could not be read again", exc_info=True)
            return
        if again and self.reroute is not None:
            self.rerouting = True
            try:
                pending = self.reroute(stanza, to)
            finally:
                self.rerouting = False
        else:
            pending = self.hooks.decide(MessageUndeliverable(str(to.bare), stanza))
        if pending is not None:
            task = asyncio.ensure_future(pending)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _warn(self, what: str, message: str, *args: object) -> None:
        """One warning per kind per 10 s (an outage must not flood the log), with
        how many were left out since the last one."""
        now = asyncio.get_running_loop().time()
        quiet_until, skipped = self._warned.get(what, (0.0, 0))
        if now < quiet_until:
            self._warned[what] = (quiet_until, skipped + 1)
            return
        self._warned[what] = (now + 10, 0)
        suffix = f" ({skipped} more since the last such line)" if skipped else ""
        log.warning(message + suffix, *args)

    # ------------------------------------------------------------ names

    def _res_key(self, bare: str) -> str:
        return self._res_prefix + bare

    def _snapshot_key(self, node: str) -> str:
        return self.node.key("sessions", node)


_STANZA = int(FrameKind.STANZA)
_REROUTED = int(FrameKind.REROUTED)


#: A change as `_event_of` writes it: node, op, sid, bare, resource, priority, presence.
Event = tuple[str, str, str, str, str, int, str | None]
#: A snapshot entry: sid, available, priority, presence, interested.
Entry = tuple[str, bool, int, str | None, bool]


def _read_event(line: str) -> Event | None:
    """One change from another node, or None when it cannot be read (another
    release's, or damaged); fields past the seven known are ignored, so a later
    release may add some."""
    fields = _leading(line, 7)
    if fields is None:
        return None
    node, op, sid, bare, resource, priority, presence = fields
    if not all(isinstance(f, str) for f in (node, op, sid, bare, resource)):
        return None
    if type(priority) is not int or not (presence is None or isinstance(presence, str)):
        return None
    return node, op, sid, bare, resource, priority, presence


def _read_entry(raw: bytes | str) -> Entry | None:
    """One snapshot entry, or None when it cannot be read (as `_read_event`)."""
    fields = _leading(raw, 5)
    if fields is None:
        return None
    sid, available, priority, presence, interested = fields
    if not isinstance(sid, str) or type(priority) is not int:
        return None
    if not (presence is None or isinstance(presence, str)):
        return None
    return sid, bool(available), priority, presence, bool(interested)


def _leading(raw: bytes | str, count: int) -> list[Any] | None:
    """The first `count` fields of a JSON list, or None when it is not one."""
    try:
        fields = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(fields, list) or len(fields) < count:
        return None
    return fields[:count]


def _start_tag(data: bytes) -> bytes | None:
    """A serialized stanza's start tag alone, closed as an empty element (to read
    its attributes without its payload); None when there is no tag."""
    end = data.find(b">")
    if end < 0:
        return None
    head = data[: end + 1]
    return head if head.endswith(b"/>") else head[:-1] + b"/>"


def _availability_sender(data: bytes) -> str | None:
    """The sender of a presence this node serialized when it is an availability
    change (no type, or 'unavailable'), read from its start tag; None for
    subscription presence (its request stays pending in the roster, and the
    roster push of a state change says the same) or anything unreadable."""
    head = _start_tag(data)
    if head is None:
        return None
    try:
        attrs = parse_fragment(head).attrs
    except Exception:  # what we serialized ourselves: nothing to note
        return None
    if attrs.get("type", "unavailable") != "unavailable":
        return None
    return attrs.get("from")


def _quiet(reply: asyncio.Future[Any]) -> None:
    """A snapshot write's reply: an error is the resync's to repair."""
    if not reply.cancelled():
        reply.exception()


def _parse(presence: str | None) -> Element | None:
    if presence is None:
        return None
    try:
        return parse_fragment(presence.encode())
    except Exception:  # a peer's presence we cannot read: none
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
