"""Digest nonce counts shared by every node (`http/auth/nonces.NonceCounts` in Redis).

A nonce minted by one node may be answered on any other (the nonce secret is an
installation secret, the same everywhere), so the highest `nc` seen must be
one count for the whole cluster: otherwise a captured response replayed to
another node would be taken.  One Lua script makes the check-and-set atomic.

The table is bounded as `LocalNonceCounts` is, with the same rule: a nonce
pushed out of the table raises a floor, and every nonce issued at or before the
floor is answered FORGOTTEN (the client gets `stale=true` and a fresh nonce),
so eviction never reopens a replay.  Entries past the nonce lifetime are
dropped a few at a time by every call.  Only nonces whose response was right
reach the table (`digest.py` checks the password first), so its size follows
real logins.

Redis unreachable: FORGOTTEN (never FRESH: a count nobody can check must not be
taken), logged; administrators see `stale=true` challenges until Redis returns.

Keys: ``nonces:nc`` (hash nonce -> highest nc), ``nonces:at`` (sorted set nonce
by issue time), ``nonces:floor``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from redis.exceptions import RedisError

from chatgate.http.auth.nonces import NonceUse

if TYPE_CHECKING:
    from chatgate.cluster.node import ClusterNode

__all__ = ["RedisNonceCounts"]

log = logging.getLogger(__name__)

#: expired entries dropped per call at most (the rest by the next calls)
_EXPIRE_BATCH: Final = 64

# KEYS: nc hash, issue-time zset, floor.  ARGV: nonce, issued_at, nc, now,
# lifetime, max_entries, expire batch.  Returns 0 fresh, 1 replayed, 2 forgotten.
_ADVANCE: Final = """
local nonce, issued, nc = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now, lifetime, max = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - lifetime),
                       'LIMIT', 0, tonumber(ARGV[7]))
for _, gone in ipairs(old) do
  redis.call('HDEL', KEYS[1], gone)
  redis.call('ZREM', KEYS[2], gone)
end
local seen = redis.call('HGET', KEYS[1], nonce)
if seen then
  if nc <= tonumber(seen) then return 1 end
  redis.call('HSET', KEYS[1], nonce, ARGV[3])
  return 0
end
local floor = tonumber(redis.call('GET', KEYS[3]) or '-1e308')
if issued <= floor then return 2 end
redis.call('HSET', KEYS[1], nonce, ARGV[3])
redis.call('ZADD', KEYS[2], issued, nonce)
local over = redis.call('ZCARD', KEYS[2]) - max
if over > 0 then
  local pushed = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #pushed, 2 do
    redis.call('HDEL', KEYS[1], pushed[i])
    local at = tonumber(pushed[i + 1])
    if at > floor then floor = at end
  end
  redis.call('SET', KEYS[3], string.format('%.17g', floor))
  if issued <= floor then return 2 end
end
return 0
"""

_USES: Final = (NonceUse.FRESH, NonceUse.REPLAYED, NonceUse.FORGOTTEN)


class RedisNonceCounts:
    """`NonceCounts` in the cluster's Redis: at most `max_entries` nonces, each
    kept for `lifetime` seconds after it was issued (see the module docstring)."""

    def __init__(self, node: ClusterNode, lifetime: float, max_entries: int = 1 << 20) -> None:
        self.lifetime = lifetime
        self.max_entries = max_entries
        self._redis = node.redis
        self._keys = [
            node.key("nonces", "nc"),
            node.key("nonces", "at"),
            node.key("nonces", "floor"),
        ]
        self._script = node.redis.register_script(_ADVANCE)

    async def advance(self, nonce: str, issued_at: float, nc: int, now: float) -> NonceUse:
        args: list[str | int | float] = [
            nonce,
            repr(float(issued_at)),
            nc,
            repr(float(now)),
            repr(float(self.lifetime)),
            self.max_entries,
            _EXPIRE_BATCH,
        ]
        try:
            result = await self._script(keys=self._keys, args=args)
        except (RedisError, OSError) as exc:
            log.warning("digest nonce counts: Redis unreachable (%s): answered stale", exc)
            return NonceUse.FORGOTTEN
        return _USES[int(result)]

    async def size(self) -> int:
        """How many nonces the table holds."""
        return int(await self._redis.zcard(self._keys[1]))
