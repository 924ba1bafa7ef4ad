"""The live stream registry shared by every node (`streams/live.LiveStreams` in Redis).

Media servers call their hooks on any node, so "one publisher per stream",
viewer counts and the memory of ended sessions must be one registry.  Each
start or done is one Lua script run on the stream's keys (atomic: two nodes
asked at once for the same stream get one publisher); the rules are
`LocalLiveStreams`'s, line for line, and the registry's test suite runs
against both (`tests/unit/cluster/test_live_streams.py`).

Keys (under ``live:``):

- ``pub``: hash stream -> its publication (JSON);
- ``v:STREAM``: hash ``"NODE CLIENT"`` -> a viewing (JSON), one per stream;
- ``streams``: set of the streams held (a publication or viewers);
- ``viewers``: the viewer total;
- ``ended``: sorted set ``"STREAM\\nNODE\\nCLIENT"`` by the time it is forgotten.

Sessions are JSON objects with their times as text (``repr`` of the float, read
back exactly by Lua's `tonumber` and Python's `float`) and ``""`` for an absent
identity or credential (never a valid one).  Peer text is validated before any
script runs, as the local registry does.

What is per stream runs in one script; `revoke`, `forget_node`, `restarted` and
`expire` run one script per stream held (pipelined): each stream's change is
atomic, the sweep as a whole is not, as with any callback arriving meanwhile.

Redis unreachable: every call raises `LiveUnavailable` and the hook is answered
503 (the media server retries or refuses; nothing is decided without the
registry).  A Redis that lost its data (restarted without persistence) forgets
who publishes: publishers are adopted again by their next renewal, as after a
restart of the in-process registry; nothing is invented.  There is no snapshot
(Redis outlives the nodes) and `restarted` is never called by a node's start:
the other nodes kept receiving callbacks.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from redis.exceptions import RedisError

from chatgate.streams.live import (
    LiveLimits,
    LiveReason,
    LiveStream,
    LiveUnavailable,
    PlayVerdict,
    Publication,
    PublishVerdict,
    Session,
    Viewing,
    check_now,
    start_is_valid,
)

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["RedisLiveStreams"]

T = TypeVar("T")

#: streams swept per pipeline (revoke, forget_node, restarted, expire)
_BATCH: Final = 256

_COMMON: Final = """
local function gone(s, now, grace, stale)
  if not s.ok then return now - tonumber(s.t) > grace end
  return stale >= 0 and now - tonumber(s.t) > stale
end
local function may_start(ended, key, renewal, now)
  local forget_after = redis.call('ZSCORE', ended, key)
  if not forget_after then return true end
  if renewal == '1' and tonumber(forget_after) > now then return false end
  redis.call('ZREM', ended, key)
  return true
end
local function remember(ended, s, now, ttl, max)
  if max == 0 then return end
  redis.call('ZADD', ended, now + ttl, s.s .. '\\n' .. s.n .. '\\n' .. s.c)
  local over = redis.call('ZCARD', ended) - max
  if over > 0 then redis.call('ZPOPMIN', ended, over) end
end
local function drop_if_empty(pub, vkey, streams, stream)
  if redis.call('HEXISTS', pub, stream) == 0 and redis.call('EXISTS', vkey) == 0 then
    redis.call('SREM', streams, stream)
  end
end
"""

# KEYS: pub, v:STREAM, streams, viewers, ended
# ARGV: stream, publisher, client, node, now, credential, renewal, takeover,
#       max_streams, grace, stale (-1: none), ended_ttl, max_ended
_TRY_PUBLISH: Final = (
    _COMMON
    + """
local stream, who, client, node, nows, cred = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now, grace, stale = tonumber(nows), tonumber(ARGV[10]), tonumber(ARGV[11])
if not may_start(KEYS[5], stream .. '\\n' .. node .. '\\n' .. client, ARGV[7], now) then
  return {'ENDED', ''}
end
local current = redis.call('HGET', KEYS[1], stream)
local ended, reason = '', 'STARTED'
if current then
  local c = cjson.decode(current)
  if c.n == node and c.c == client and c.u == who then
    c.t = nows
    c.ok = true
    c.cr = cred
    redis.call('HSET', KEYS[1], stream, cjson.encode(c))
    return {'RENEWED', ''}
  end
  local same_user = who ~= '' and c.u == who
  if gone(c, now, grace, stale) or ((not c.ok) and same_user) then
    ended = current
  elseif not c.ok then
    return {'BUSY', ''}
  elseif same_user and ARGV[8] == '1' then
    ended = current
    reason = 'TAKEN_OVER'
    remember(KEYS[5], c, now, tonumber(ARGV[12]), tonumber(ARGV[13]))
  else
    return {'BUSY', ''}
  end
elseif redis.call('SISMEMBER', KEYS[3], stream) == 0 then
  local limit = tonumber(ARGV[9])
  if redis.call('SCARD', KEYS[3]) >= limit and redis.call('HLEN', KEYS[1]) >= limit then
    return {'TOO_MANY_STREAMS', ''}
  end
  redis.call('SADD', KEYS[3], stream)
end
redis.call('HSET', KEYS[1], stream, cjson.encode(
  {s = stream, u = who, c = client, n = node, t0 = nows, t = nows, ok = true, cr = cred}))
return {reason, ended}
"""
)

# KEYS: pub, v:STREAM, streams, ended.  ARGV: stream, client, node
_PUBLISH_DONE: Final = (
    _COMMON
    + """
local stream, client, node = ARGV[1], ARGV[2], ARGV[3]
redis.call('ZREM', KEYS[4], stream .. '\\n' .. node .. '\\n' .. client)
local current = redis.call('HGET', KEYS[1], stream)
if not current then return false end
local c = cjson.decode(current)
if c.n ~= node or c.c ~= client then return false end
redis.call('HDEL', KEYS[1], stream)
drop_if_empty(KEYS[1], KEYS[2], KEYS[3], stream)
return current
"""
)

# KEYS: pub, v:STREAM, streams, viewers, ended
# ARGV: stream, viewer, client, node, now, credential, renewal, max_streams,
#       max_viewers_per_stream, max_viewers
_PLAY_STARTED: Final = (
    _COMMON
    + """
local stream, who, client, node, nows, cred = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local now, per_stream = tonumber(nows), tonumber(ARGV[9])
if not may_start(KEYS[5], stream .. '\\n' .. node .. '\\n' .. client, ARGV[7], now) then
  return {'ENDED', 0}
end
local pair = node .. ' ' .. client
local held = redis.call('SISMEMBER', KEYS[3], stream) == 1
local function viewing()
  return cjson.encode({s = stream, u = who, c = client, n = node, t0 = nows, t = nows, ok = true,
                       cr = cred})
end
if held then
  local known = redis.call('HGET', KEYS[2], pair)
  if known then
    local k = cjson.decode(known)
    if k.u == who then
      k.t = nows
      k.ok = true
      k.cr = cred
      redis.call('HSET', KEYS[2], pair, cjson.encode(k))
      return {'RENEWED', redis.call('HLEN', KEYS[2])}
    end
    redis.call('HSET', KEYS[2], pair, viewing())
    return {'STARTED', redis.call('HLEN', KEYS[2])}
  end
  if redis.call('HLEN', KEYS[2]) >= per_stream then
    return {'TOO_MANY_VIEWERS', redis.call('HLEN', KEYS[2])}
  end
elseif redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[8]) then
  return {'TOO_MANY_STREAMS', 0}
elseif per_stream == 0 then
  return {'TOO_MANY_VIEWERS', 0}
end
if tonumber(redis.call('GET', KEYS[4]) or '0') >= tonumber(ARGV[10]) then
  return {'VIEWER_LIMIT', redis.call('HLEN', KEYS[2])}
end
redis.call('SADD', KEYS[3], stream)
redis.call('HSET', KEYS[2], pair, viewing())
redis.call('INCR', KEYS[4])
return {'STARTED', redis.call('HLEN', KEYS[2])}
"""
)

# KEYS: pub, v:STREAM, streams, viewers, ended.  ARGV: stream, client, node
_PLAY_DONE: Final = (
    _COMMON
    + """
local stream, client, node = ARGV[1], ARGV[2], ARGV[3]
redis.call('ZREM', KEYS[5], stream .. '\\n' .. node .. '\\n' .. client)
local pair = node .. ' ' .. client
local known = redis.call('HGET', KEYS[2], pair)
if not known then return false end
redis.call('HDEL', KEYS[2], pair)
redis.call('DECR', KEYS[4])
drop_if_empty(KEYS[1], KEYS[2], KEYS[3], stream)
return known
"""
)

# One stream's sessions matching a condition are removed (or, for 'restart',
# marked unconfirmed); returns what was removed, each 'p' or 'v' then its JSON.
# KEYS: pub, v:STREAM, streams, viewers, ended
# ARGV: stream, mode, now, grace, stale, ended_ttl, max_ended, then per mode:
#   revoke: user ('' any), credential ('' any);  node: node
_SWEEP: Final = (
    _COMMON
    + """
local stream, mode, nows = ARGV[1], ARGV[2], ARGV[3]
local now, grace, stale = tonumber(nows), tonumber(ARGV[4]), tonumber(ARGV[5])
local function matches(s)
  if mode == 'revoke' then
    return (ARGV[8] == '' or s.u == ARGV[8]) and (ARGV[9] == '' or s.cr == ARGV[9])
  elseif mode == 'node' then
    return s.n == ARGV[8]
  elseif mode == 'expire' then
    return gone(s, now, grace, stale)
  end
  return false
end
local removed = {}
local current = redis.call('HGET', KEYS[1], stream)
if current then
  local c = cjson.decode(current)
  if mode == 'restart' then
    c.ok = false
    c.t = nows
    redis.call('HSET', KEYS[1], stream, cjson.encode(c))
  elseif matches(c) then
    redis.call('HDEL', KEYS[1], stream)
    removed[#removed + 1] = 'p' .. current
    if mode == 'revoke' then remember(KEYS[5], c, now, tonumber(ARGV[6]), tonumber(ARGV[7])) end
  end
end
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local v = cjson.decode(all[i + 1])
  if mode == 'restart' then
    v.ok = false
    v.t = nows
    redis.call('HSET', KEYS[2], all[i], cjson.encode(v))
  elseif matches(v) then
    redis.call('HDEL', KEYS[2], all[i])
    redis.call('DECR', KEYS[4])
    removed[#removed + 1] = 'v' .. all[i + 1]
    if mode == 'revoke' then remember(KEYS[5], v, now, tonumber(ARGV[6]), tonumber(ARGV[7])) end
  end
end
drop_if_empty(KEYS[1], KEYS[2], KEYS[3], stream)
return removed
"""
)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _session(data: bytes | str, cls: type[Publication] | type[Viewing]) -> Session:
    s = json.loads(data)
    return cls(
        s["s"],
        s["u"] or None,
        s["c"],
        s["n"],
        float(s["t0"]),
        float(s["t"]),
        bool(s["ok"]),
        s["cr"] or None,
    )


def _publication(data: bytes | str) -> Publication:
    session = _session(data, Publication)
    assert isinstance(session, Publication)
    return session


def _viewing(data: bytes | str) -> Viewing:
    session = _session(data, Viewing)
    assert isinstance(session, Viewing)
    return session


class RedisLiveStreams:
    """`LiveStreams` in Redis (see the module docstring).  `prefix` is the whole
    key prefix (``ClusterNode.key("live", "")``)."""

    def __init__(
        self, redis: aioredis.Redis, prefix: str, limits: LiveLimits | None = None
    ) -> None:
        self.limits = limits or LiveLimits()
        self._redis = redis
        self._prefix = prefix
        self._pub = prefix + "pub"
        self._streams = prefix + "streams"
        self._viewers = prefix + "viewers"
        self._ended = prefix + "ended"
        self._try_publish = redis.register_script(_TRY_PUBLISH)
        self._publish_done = redis.register_script(_PUBLISH_DONE)
        self._play_started = redis.register_script(_PLAY_STARTED)
        self._play_done = redis.register_script(_PLAY_DONE)
        self._sweep = redis.register_script(_SWEEP)

    def _keys(self, stream: str) -> list[str]:
        return [self._pub, self._prefix + "v:" + stream, self._streams, self._viewers, self._ended]

    async def _call(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await work()
        except (RedisError, OSError) as exc:
            raise LiveUnavailable(f"the live registry (Redis) cannot be reached: {exc}") from exc

    def _stale(self) -> str:
        stale = self.limits.stale_after
        return "-1" if stale is None else repr(float(stale))

    # -- publishing ------------------------------------------------------------

    async def try_publish(
        self,
        stream: str,
        publisher: str | None,
        client_id: str,
        node: str,
        now: float,
        *,
        credential: str | None = None,
        renewal: bool = False,
    ) -> PublishVerdict:
        check_now(now)
        if not start_is_valid(stream, publisher, client_id, node, credential):
            return PublishVerdict(False, LiveReason.INVALID)
        limits = self.limits
        args: list[Any] = [
            stream,
            publisher or "",
            client_id,
            node,
            repr(float(now)),
            credential or "",
            int(renewal),
            int(limits.takeover),
            limits.max_streams,
            repr(float(limits.unconfirmed_grace)),
            self._stale(),
            repr(float(limits.ended_ttl)),
            limits.max_ended,
        ]
        reason, ended = await self._call(
            lambda: self._try_publish(keys=self._keys(stream), args=args)
        )
        verdict = LiveReason[_text(reason)]
        accepted = verdict in (LiveReason.STARTED, LiveReason.RENEWED, LiveReason.TAKEN_OVER)
        return PublishVerdict(accepted, verdict, _publication(ended) if ended else None)

    async def publish_done(self, stream: str, client_id: str, node: str) -> Publication | None:
        keys = self._keys(stream)
        ended = await self._call(
            lambda: self._publish_done(
                keys=[keys[0], keys[1], keys[2], keys[4]], args=[stream, client_id, node]
            )
        )
        return _publication(ended) if ended else None

    # -- playing ---------------------------------------------------------------

    async def play_started(
        self,
        stream: str,
        viewer: str | None,
        client_id: str,
        node: str,
        now: float,
        *,
        credential: str | None = None,
        renewal: bool = False,
    ) -> PlayVerdict:
        check_now(now)
        if not start_is_valid(stream, viewer, client_id, node, credential):
            return PlayVerdict(False, LiveReason.INVALID)
        limits = self.limits
        args: list[Any] = [
            stream,
            viewer or "",
            client_id,
            node,
            repr(float(now)),
            credential or "",
            int(renewal),
            limits.max_streams,
            limits.max_viewers_per_stream,
            limits.max_viewers,
        ]
        reason, viewers = await self._call(
            lambda: self._play_started(keys=self._keys(stream), args=args)
        )
        verdict = LiveReason[_text(reason)]
        accepted = verdict in (LiveReason.STARTED, LiveReason.RENEWED)
        return PlayVerdict(accepted, verdict, int(viewers))

    async def play_done(self, stream: str, client_id: str, node: str) -> Viewing | None:
        ended = await self._call(
            lambda: self._play_done(keys=self._keys(stream), args=[stream, client_id, node])
        )
        return _viewing(ended) if ended else None

    # -- listing -----------------------------------------------------------------

    async def live(self, *, include_unconfirmed: bool = False) -> list[LiveStream]:
        async def read() -> list[LiveStream]:
            published = await self._redis.hgetall(self._pub)
            pubs = sorted(
                (_publication(data) for data in published.values()), key=lambda p: p.stream
            )
            pubs = [p for p in pubs if p.confirmed or include_unconfirmed]
            async with self._redis.pipeline(transaction=False) as pipe:
                for pub in pubs:
                    pipe.hvals(self._prefix + "v:" + pub.stream)
                viewings = await pipe.execute()
            rows = []
            for pub, views in zip(pubs, viewings, strict=True):
                count = sum(1 for v in views if include_unconfirmed or json.loads(v)["ok"] is True)
                rows.append(
                    LiveStream(
                        pub.stream,
                        pub.publisher,
                        pub.client_id,
                        pub.node,
                        pub.started_at,
                        pub.last_seen,
                        pub.confirmed,
                        count,
                    )
                )
            return rows

        return await self._call(read)

    async def counts(self) -> tuple[int, int]:
        """(streams, viewers) held, unconfirmed included: what the bounds limit."""

        async def read() -> tuple[int, int]:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.scard(self._streams)
                pipe.get(self._viewers)
                streams, viewers = await pipe.execute()
            return int(streams), int(viewers or 0)

        return await self._call(read)

    # -- ending ------------------------------------------------------------------

    async def revoke(
        self,
        now: float,
        *,
        user: str | None = None,
        stream: str | None = None,
        credential: str | None = None,
    ) -> list[Session]:
        """As `LocalLiveStreams.revoke` (`ValueError` without a criterion)."""
        check_now(now)
        if user is None and stream is None and credential is None:
            raise ValueError("revoke needs a user, a stream or a credential")
        if user == "" or credential == "":
            return []  # no session has an empty identity or credential
        names = [stream] if stream is not None else None
        return await self._sweep_all(names, "revoke", now, [user or "", credential or ""])

    async def forget_node(self, node: str) -> list[Session]:
        async def forget_ended() -> None:
            gone = [
                member
                async for member in self._redis.zscan_iter(self._ended)
                if _text(member[0]).split("\n")[1:2] == [node]
            ]
            if gone:
                await self._redis.zrem(self._ended, *(m[0] for m in gone))

        await self._call(forget_ended)
        return await self._sweep_all(None, "node", 0.0, [node])

    async def restarted(self, now: float) -> None:
        check_now(now)
        await self._sweep_all(None, "restart", now, [])

    async def expire(self, now: float) -> list[Session]:
        check_now(now)
        await self._call(lambda: self._redis.zremrangebyscore(self._ended, "-inf", repr(now)))
        return await self._sweep_all(None, "expire", now, [])

    async def _sweep_all(
        self, names: Sequence[str] | None, mode: str, now: float, extra: list[str]
    ) -> list[Session]:
        """Run the sweep script on each stream (all held, unless `names`)."""
        limits = self.limits
        common: list[Any] = [
            mode,
            repr(float(now)),
            repr(float(limits.unconfirmed_grace)),
            self._stale(),
            repr(float(limits.ended_ttl)),
            limits.max_ended,
            *extra,
        ]

        async def run() -> list[Session]:
            streams = (
                list(names)
                if names is not None
                else sorted(_text(s) for s in await self._redis.smembers(self._streams))
            )
            removed: list[Session] = []
            for start in range(0, len(streams), _BATCH):
                batch = streams[start : start + _BATCH]
                async with self._redis.pipeline(transaction=False) as pipe:
                    for name in batch:
                        await self._sweep(keys=self._keys(name), args=[name, *common], client=pipe)
                    results = await pipe.execute()
                for found in results:
                    for entry in found or ():
                        data = _text(entry)
                        pub = data[0] == "p"
                        removed.append(_publication(data[1:]) if pub else _viewing(data[1:]))
            return removed

        return await self._call(run)
