"""XEP-0357 push in a cluster: one rate limit per registration, whichever nodes
route the account's messages.

A user's messages are routed on their senders' nodes, so with a limiter per node
a phone could be woken once per interval by each node.  Here each registration's
slot lives in Redis, decided by a script so that two nodes never both send:

- ``push:slot:H`` (H: a digest of the registration): set with an expiry of the
  interval when a notification goes out (`SET NX PX`): while it exists, the
  interval is used;
- ``push:pend:H``: a hash (count, sender, body) of the messages counted into the
  one notification sent when the interval ends; the node whose message found the
  interval used first is told to flush it after the slot's remaining time (the
  others only count theirs in).  It expires after three intervals, so a node that
  died before flushing does not silence the registration for good.

This runs after a message found no session (in the background, not in routing):
one script per message per registration, no cost elsewhere.  Redis away: each
node decides with its own `LocalNotificationLimiter` (at most one notification
per interval per node, as before), logged once per outage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from redis.exceptions import RedisError

from chatgate.cluster.node import ClusterNode
from chatgate.cluster.resp import RespError, Script
from chatgate.modules.push_limits import Defer, LocalNotificationLimiter, Send

log = logging.getLogger(__name__)

#: seconds to wait for Redis's decision before deciding on this node alone
ANSWER_TIMEOUT = 5.0

#: KEYS: slot, pending.  ARGV: interval (ms), sender, body.
#: Returns {'send'}, {'defer', ms left}, or {'count'} (counted into a flush to come).
_ADMIT = Script(
    """
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'count', 1)
  redis.call('HSET', KEYS[2], 'sender', ARGV[2], 'body', ARGV[3])
  return {'count'}
end
if redis.call('SET', KEYS[1], '1', 'PX', ARGV[1], 'NX') then
  return {'send'}
end
redis.call('HSET', KEYS[2], 'count', 1, 'sender', ARGV[2], 'body', ARGV[3])
redis.call('PEXPIRE', KEYS[2], 3 * tonumber(ARGV[1]))
local left = redis.call('PTTL', KEYS[1])
if left < 0 then left = 0 end
return {'defer', left}
"""
)

#: KEYS: slot, pending.  ARGV: interval (ms).  Returns {count, sender, body} or
#: {} when nothing was counted; the slot starts a new interval when it sends.
_FLUSH = Script(
    """
local found = redis.call('HMGET', KEYS[2], 'count', 'sender', 'body')
redis.call('DEL', KEYS[2])
if not found[1] then return {} end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return found
"""
)


class RedisNotificationLimiter:
    """`NotificationLimiter` shared by the nodes of a cluster (module docstring)."""

    def __init__(self, node: ClusterNode, interval: float, fallback: LocalNotificationLimiter):
        self.node = node
        self.interval_ms = max(1, int(interval * 1000))
        self.fallback = fallback
        self._failing = False
        node.on_reconnect(self._back)

    def _keys(self, key: str) -> list[str]:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return [self.node.key("push", "slot", digest), self.node.key("push", "pend", digest)]

    async def admit(self, key: str, now: float, sender: str, body: str) -> Send | Defer | None:
        try:
            answer = await asyncio.wait_for(
                self.node.run_script(_ADMIT, self._keys(key), [self.interval_ms, sender, body]),
                ANSWER_TIMEOUT,
            )
        except (RedisError, RespError, OSError, ConnectionError, TimeoutError) as exc:
            self._failed(exc)
            return self.fallback.admit(key, now, sender, body)
        verdict = _text(answer[0])
        if verdict == "send":
            return Send(1)
        if verdict == "defer":
            return Defer(int(answer[1]) / 1000)
        return None

    async def flush(self, key: str, now: float) -> tuple[int, str, str] | None:
        try:
            found = await asyncio.wait_for(
                self.node.run_script(_FLUSH, self._keys(key), [self.interval_ms]),
                ANSWER_TIMEOUT,
            )
        except (RedisError, RespError, OSError, ConnectionError, TimeoutError) as exc:
            self._failed(exc)
            return self.fallback.flush(key, now)
        if not found:
            return self.fallback.flush(key, now)  # what was counted here during an outage
        return int(found[0]), _text(found[1] or b""), _text(found[2] or b"")

    def _failed(self, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "push: Redis unreachable (%s): each node limits notifications on its own", exc
            )

    def _back(self) -> None:
        self._failing = False


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
