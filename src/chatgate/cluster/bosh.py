"""BOSH sessions across nodes: a request reaching a node that does not hold its
session is forwarded to the node that does, and the answer relayed back.

Why forwarding, and why this shape
----------------------------------
A BOSH session (its held requests, timers, XMPP stream) lives in the process
that created it; with SO_REUSEPORT or a load balancer, any node may get any of
its requests.  Moving the session is out of the question (held requests are
open HTTP exchanges), and sticky balancing cannot be relied on (SO_REUSEPORT
spreads connections by hash, a client opens several).  So the request goes to
the owner, which answers it as if it had arrived there, byte for byte.

- The owner is found without a lookup: the sid ends with a tag of the node that
  made it (`TAG_LENGTH` characters of a hash of its name), and each node listens
  on the channel of its tag.  The 144 random bits before the tag keep the sid
  unguessable.  A message published on a channel nobody listens to reaches 0
  subscribers: the owner is gone (or never was), and the answer is XEP-0124's
  terminal `item-not-found` at once.  No registry of sids is kept anywhere,
  so nothing needs cleaning when a node dies.
- Request and answer travel over Redis pub/sub: ``bosh:TAG`` carries requests to
  the node of TAG, ``bosh:TAG:reply`` the answers to the node of TAG.  Each
  request has an id, the asker's tag, and the body as received (already within
  `[http] max_request_size`).  The owner answers it through the same
  `BoshEndpoint.answer` as a local request, so every rule (rid window, hold,
  wait, limits, rate) is the owner's own.
- Bounds: a node has at most `max_in_flight` requests forwarded and not yet
  answered, and at most `max_bytes` of their bodies; past either, 503 (not
  terminal: the client may retry).  One sid has at most `max_hold` + 2 of them
  (what a client holds, and a terminate): one session cannot take the others'
  share.  The owner refuses a body over its session's limit before the read
  rate's wait, so an oversized body holds no share while it would sleep.  The
  owner serves at most `max_in_flight` forwarded requests at once; past it,
  503 too.  That is the number of requests its own sessions may hold
  (`max_sessions` x (`max_hold` + 1)).  An answer that does not come within
  twice the longest `wait` plus `ANSWER_SLACK` seconds (the owner is frozen or
  cut off) is 504, not terminal either; the owner's death answers every
  request waiting on it with `item-not-found`.
- Redis unreachable: 503 (the owner may be alive; the session is not lost).

Must not: know anything of what a session does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import logging
import re
from typing import TYPE_CHECKING, Final

from chatgate.cluster.node import ClusterUnavailable
from chatgate.http import bosh_body
from chatgate.http.bosh_session import Response, new_sid

if TYPE_CHECKING:
    from chatgate.cluster.node import ClusterNode
    from chatgate.http.bosh import BoshEndpoint
    from chatgate.vocabulary.facts import ConnectionFacts

__all__ = ["TAG_LENGTH", "BoshForwarding", "node_tag"]

log = logging.getLogger(__name__)

#: Characters of the node tag at the end of a sid (36 bits: two nodes of a
#: cluster share a tag with odds of one in tens of billions; checked at start).
TAG_LENGTH: Final = 6
#: Seconds beyond twice the longest `wait` an answer may take.
ANSWER_SLACK: Final = 10.0

_ITEM_NOT_FOUND: Final = (404, bosh_body.terminate("item-not-found"))
_BUSY: Final = (503, b"")
_TIMEOUT: Final = (504, b"")
_TOO_LARGE: Final = (413, bosh_body.terminate("policy-violation"))
_NOT_FORWARDABLE: Final = (400, bosh_body.terminate("bad-request"))

Answer = tuple[Response, str]

#: what `BoshForwarding.new_sid` makes: 24 characters of `new_sid`, then a tag
_SID: Final = re.compile(rf"[A-Za-z0-9_-]{{{24 + TAG_LENGTH}}}")


def node_tag(name: str) -> str:
    """The tag a node's sids end with (URL-safe base64, as the sid's own characters)."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:TAG_LENGTH]


class _NotForwardable(Exception):
    """A forwarded body that would create a session: creation is always local."""


class BoshForwarding:
    """The cluster side of one BOSH endpoint (see the module docstring)."""

    def __init__(
        self,
        node: ClusterNode,
        endpoint: BoshEndpoint,
        *,
        max_in_flight: int,
        max_bytes: int,
        max_body: int,
    ) -> None:
        self.node = node
        self.endpoint = endpoint
        self.tag = node_tag(node.name)
        self.max_in_flight = max_in_flight
        self.max_bytes = max_bytes
        self.max_body = max_body
        self.answer_timeout = 2 * endpoint.options.max_wait + ANSWER_SLACK
        #: requests of one sid forwarded and unanswered at most: what a client may
        #: hold (XEP-0124 `requests`, `max_hold` + 1) and a terminate
        self.per_sid = endpoint.options.max_hold + 2
        self._per_sid: dict[str, int] = {}
        self._ids = itertools.count(1)
        #: request id -> (owner tag, body size, the answer to come)
        self._pending: dict[int, tuple[str, int, asyncio.Future[Answer]]] = {}
        self._pending_bytes = 0
        self._serving: set[asyncio.Task[None]] = set()
        self._closed = False
        node.subscribe(self._requests_channel(self.tag), self._on_request)
        node.subscribe(self._replies_channel(self.tag), self._on_reply)
        node.on_node_gone(self._node_gone)

    def _requests_channel(self, tag: str) -> str:
        return self.node.key("bosh", tag)

    def _replies_channel(self, tag: str) -> str:
        return self.node.key("bosh", tag, "reply")

    async def check_tag(self) -> None:
        """Warn when another node already listens on this node's tag (a collision
        of two names' hashes, or a second process under this node's name)."""
        with contextlib.suppress(Exception):
            counts = await self.node.redis.pubsub_numsub(self._requests_channel(self.tag))
            listeners = int(counts[0][1]) if counts else 0
            if listeners > 1:
                log.error(
                    "BOSH: %d nodes listen for sids tagged %s (node %s): requests of"
                    " their sessions reach both; give this node another name",
                    listeners,
                    self.tag,
                    self.node.name,
                )

    # ------------------------------------------------------------ the asking side

    def new_sid(self) -> str:
        """A sid of this node: 144 random bits, then the tag."""
        return new_sid() + self.tag

    async def forward(self, sid: str, data: bytes) -> Answer | None:
        """The owner's answer to a request whose sid this node does not hold; None
        when the sid is this node's own (or carries no tag): not found here."""
        if self._closed or _SID.fullmatch(sid) is None:
            return None  # not a sid any node makes: not found, Redis not asked
        tag = sid[-TAG_LENGTH:]
        if tag == self.tag:
            return None
        content_type = bosh_body.CONTENT_TYPE
        if self._per_sid.get(sid, 0) >= self.per_sid:
            # More than a BOSH client holds (`hold` + 1, and a terminate): one
            # session must not take the share of every other's requests.
            return _BUSY, content_type
        if (
            len(self._pending) >= self.max_in_flight
            or self._pending_bytes + len(data) > self.max_bytes
        ):
            log.warning(
                "BOSH: %d requests (%d bytes) forwarded and unanswered: refusing more",
                len(self._pending),
                self._pending_bytes,
            )
            return _BUSY, content_type
        self._per_sid[sid] = self._per_sid.get(sid, 0) + 1
        request_id = next(self._ids)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (tag, len(data), future)
        self._pending_bytes += len(data)
        try:
            message = b"%d %s\n%s" % (request_id, self.tag.encode(), data)
            try:
                receivers = await self.node.publish(self._requests_channel(tag), message)
            except ClusterUnavailable as exc:
                log.warning("BOSH: cannot forward a request for sid %s: %s", sid, exc)
                return _BUSY, content_type
            finally:
                del message  # not kept while the answer is awaited
            if receivers == 0:
                return _ITEM_NOT_FOUND, content_type  # the owner is gone, or never was
            try:
                async with asyncio.timeout(self.answer_timeout):
                    return await future
            except TimeoutError:
                log.warning("BOSH: no answer from the node of sid %s in time", sid)
                return _TIMEOUT, content_type
        finally:
            self._pending.pop(request_id, None)
            self._pending_bytes -= len(data)
            left = self._per_sid.pop(sid) - 1
            if left:
                self._per_sid[sid] = left

    def _on_reply(self, message: bytes) -> None:
        head, _, body = message.partition(b"\n")
        parts = head.split(b" ", 2)
        if len(parts) != 3:
            return
        request_id, status, content_type = parts
        pending = self._pending.get(int(request_id))
        if pending is None:
            return  # it timed out meanwhile
        future = pending[2]
        if not future.done():
            future.set_result(((int(status), body), content_type.decode("ascii", "replace")))

    def _node_gone(self, name: str) -> None:
        """Requests waiting on a node that died will not be answered: its sessions
        died with it."""
        tag = node_tag(name)
        for owner, _size, future in list(self._pending.values()):
            if owner == tag and not future.done():
                future.set_result((_ITEM_NOT_FOUND, bosh_body.CONTENT_TYPE))

    # ------------------------------------------------------------ the owning side

    def _on_request(self, message: bytes) -> None:
        head, _, data = message.partition(b"\n")
        parts = head.split(b" ")
        if len(parts) != 2 or self._closed:
            return
        request_id, asker = int(parts[0]), parts[1].decode("ascii", "replace")
        if len(self._serving) >= self.max_in_flight:
            log.warning(
                "BOSH: %d forwarded requests being served: refusing more", self.max_in_flight
            )
            self._reply_soon(request_id, asker, (_BUSY, bosh_body.CONTENT_TYPE))
            return
        task = asyncio.get_running_loop().create_task(self._serve(request_id, asker, data))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, request_id: int, asker: str, data: bytes) -> None:
        if len(data) > self.max_body:
            answer: Answer = (_TOO_LARGE, bosh_body.CONTENT_TYPE)
        else:
            try:
                answer = await self.endpoint.answer(data, _no_facts)
            except _NotForwardable:
                answer = (_NOT_FORWARDABLE, bosh_body.CONTENT_TYPE)
        await self._reply(request_id, asker, answer)

    def _reply_soon(self, request_id: int, asker: str, answer: Answer) -> None:
        task = asyncio.get_running_loop().create_task(self._reply(request_id, asker, answer))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _reply(self, request_id: int, asker: str, answer: Answer) -> None:
        (status, body), content_type = answer
        message = b"%d %d %s\n%s" % (request_id, status, content_type.encode("ascii"), body)
        try:
            await self.node.publish(self._replies_channel(asker), message)
        except ClusterUnavailable as exc:
            # The asker times out (504) and the client retries: the session
            # answers the same rid again from its cache (XEP-0124 §14.3).
            log.warning("BOSH: cannot send the answer of a forwarded request: %s", exc)

    # ------------------------------------------------------------ life

    async def close(self) -> None:
        """The listener stops: waiting askers get 503, forwarded requests being
        served end with their sessions (already closed by the endpoint)."""
        self._closed = True
        for _tag, _size, future in list(self._pending.values()):
            if not future.done():
                future.set_result((_BUSY, bosh_body.CONTENT_TYPE))
        serving = list(self._serving)
        if serving:
            await asyncio.wait(serving, timeout=1.0)
        for task in serving:
            task.cancel()


def _no_facts() -> ConnectionFacts:
    raise _NotForwardable
