"""Brute-force and registration throttles shared by every node of a cluster.

With N nodes an attacker must not get N times the budget: failures from all
nodes count together, per address and per account, and so do registrations.

Design: **decide locally, count in Redis, learn by pub/sub.**  The throttles'
calls are synchronous and on every login's path (`auth/gate.py`), so a decision
never waits for Redis.  `ClusterAuthThrottle` and `ClusterRegistrationThrottle`
are the in-process throttles (same tables, same decisions, same code) that also

* record every counted failure, forgiving success and registration in Redis,
  atomically: one Lua script per event increments the counters (INCR + PEXPIRE
  for failures, a sorted set per sliding window for registrations, Redis's own
  clock) and PUBLISHes the resulting totals in the same step, so the totals
  arrive at every node in the order Redis applied them.  Events are batched:
  everything recorded during one turn of the event loop goes in one pipeline;
* apply what the other nodes recorded as it arrives (`merge_failure`,
  `merge_success`, `merge`): a counter becomes at least the shared total, and a
  held failure takes a slot of its address for its hold on every node, so slots
  bound concurrent guesses across the cluster as well.

Consistency window: a failure made on node A reaches node B's table one Redis
round trip after the loop turn it was made in (well under a millisecond to a few
on a LAN).  Guesses evaluated on B inside that window are decided on B's older
totals: at most the attempts that start in that window escape a hold they would
have had in one process.  Attempts being evaluated (not yet failed, a few
milliseconds) hold slots on their own node only.

Redis unreachable: decisions go on locally (logged once); the events wait in a
bounded queue (`MAX_QUEUED`, the oldest dropped past it) and are sent when Redis
returns (`ClusterNode.on_reconnect`), so failures made during the outage are
counted cluster-wide after it.  A Redis that lost everything starts from those;
every node keeps what its own table knew (a counter is never lowered by a total).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from redis.exceptions import RedisError

from chatgate.auth.throttle.base import ALLOW, FailureRecord, Verdict
from chatgate.auth.throttle.login import _UNSEEN, AuthThrottle, _AddressState
from chatgate.auth.throttle.options import ThrottleOptions
from chatgate.auth.throttle.registration import RegistrationThrottle
from chatgate.auth.throttle.tables import account_key
from chatgate.cluster.node import ClusterNode
from chatgate.cluster.resp import RespError, Script

__all__ = ["MAX_QUEUED", "ClusterAuthThrottle", "ClusterRegistrationThrottle", "RedisRecorder"]

log = logging.getLogger(__name__)

#: Events kept while Redis is unreachable; past it the oldest are dropped.
MAX_QUEUED: Final = 10_000

# A failure: INCR the address, account and pair counters (each expiring a window
# after its last failure, as the in-process entries do), then publish the totals.
# ARGV[5] is the message without its closing bracket (JSON made in Python).
_FAILURE = """
local a = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local u, p = 0, 0
if ARGV[6] == '1' then
  u = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  p = redis.call('INCR', KEYS[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
redis.call('PUBLISH', ARGV[1], ARGV[5] .. ',' .. a .. ',' .. u .. ',' .. p .. ']')
return a
"""

# A success: the pair's failures (from every node) are forgiven from the address's
# and the account's counters, and the number forgiven is published.
_SUCCESS = """
local p = tonumber(redis.call('GET', KEYS[3]) or '0')
if p > 0 then
  redis.call('DEL', KEYS[3])
  for i = 1, 2 do
    if redis.call('DECRBY', KEYS[i], p) <= 0 then redis.call('DEL', KEYS[i]) end
  end
end
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ',' .. p .. ']')
return p
"""

# A registration attempt ('a') or an account created ('r'): sliding windows as sorted
# sets scored by Redis's clock (one clock for every node); publishes the three counts.
_REGISTRATION = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function count(key, period, add)
  period = tonumber(period)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
  if add then
    redis.call('ZADD', key, now, ARGV[5])
    redis.call('PEXPIRE', key, period)
  end
  return redis.call('ZCARD', key)
end
local attempt = ARGV[2] == 'a'
local a = count(KEYS[1], ARGV[3], attempt)
local r = count(KEYS[2], ARGV[3], not attempt)
local total = count(KEYS[3], ARGV[4], not attempt)
redis.call('PUBLISH', ARGV[1], ARGV[6] .. ',' .. a .. ',' .. r .. ',' .. total .. ']')
return a
"""


def _raw(text: str) -> bytes:
    """A counter key's text as bytes (an address a media server reports may hold
    anything; `surrogatepass` so that no string can fail to encode)."""
    return text.encode("utf-8", "surrogatepass")


def _glob_escape(text: bytes) -> bytes:
    """`text` matched literally by a Redis glob pattern (SCAN MATCH)."""
    out = bytearray()
    for byte in text:
        if byte in b"*?[]\\":
            out.append(0x5C)  # backslash
        out.append(byte)
    return bytes(out)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class RedisRecorder:
    """Sends events (Lua script calls) to Redis, everything recorded in one turn of
    the event loop in one pipeline; keeps them while Redis is away (bounded) and
    sends them when it returns.  `record` never awaits."""

    def __init__(self, node: ClusterNode, *, limit: int = MAX_QUEUED) -> None:
        self._node = node
        self._queue: deque[tuple[Script, list[bytes], list[bytes | str | int]]] = deque()
        self._limit = limit
        self._task: asyncio.Task[None] | None = None
        self._scheduled = False
        self._warned = False
        #: events dropped because the queue was full (Redis away too long)
        self.dropped = 0
        node.on_reconnect(self._reconnected)

    def script(self, source: str) -> Script:
        return Script(source)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def record(self, script: Script, keys: list[bytes], args: list[bytes | str | int]) -> None:
        if len(self._queue) >= self._limit:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append((script, keys, args))
        if self._scheduled or (self._task is not None and not self._task.done()):
            return  # the running flush takes it
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())

    def _reconnected(self) -> None:
        if self._queue:
            log.info(
                "cluster: sending %d throttle events kept while Redis was away", len(self._queue)
            )
            self._start()

    async def _flush(self) -> None:
        while self._queue:
            if not self._node.connected:
                return  # `_reconnected` sends them
            batch, self._queue = self._queue, deque()
            # On the lean connection (`cluster/resp.py`): the batch's scripts go out
            # in one write, without redis-py's cost per command.
            send = self._node.send
            results = await asyncio.gather(
                *(
                    send("EVALSHA", script.sha, len(keys), *keys, *args)
                    for script, keys, args in batch
                ),
                return_exceptions=True,
            )
            for index, ((script, keys, args), result) in enumerate(
                zip(batch, results, strict=True)
            ):
                if isinstance(result, RespError) and str(result).startswith("NOSCRIPT"):
                    # Redis restarted and forgot the script: EVAL loads it again.
                    try:
                        results[index] = await self._node.run_script(script, keys, args)
                    except (RespError, OSError, RedisError) as error:
                        results[index] = error
            failed = next((r for r in results if isinstance(r, RespError)), None)
            if failed is not None and not str(failed).startswith("NOSCRIPT"):
                log.warning("cluster: a throttle event was refused by Redis: %s", failed)
            unsent = deque(
                item
                for item, result in zip(batch, results, strict=True)
                if isinstance(result, (OSError, RedisError))
            )
            if unsent:
                cause = next(r for r in results if isinstance(r, (OSError, RedisError)))
                batch = unsent
                batch.extend(self._queue)
                while len(batch) > self._limit:
                    batch.popleft()
                    self.dropped += 1
                self._queue = batch
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "cluster: throttle counts cannot reach Redis (%s): deciding on this"
                        " node's counts, %d events kept for when it returns",
                        cause,
                        len(batch),
                    )
                return
            self._warned = False

    async def drain(self) -> None:
        """Wait until what was recorded so far is sent (tests, an orderly stop)."""
        await asyncio.sleep(0)
        while self._queue or self._scheduled or (self._task is not None and not self._task.done()):
            if self._task is not None and not self._task.done():
                await asyncio.wait({self._task})
            else:
                await asyncio.sleep(0)
            if self._queue and not self._node.connected:
                return


def _ignore_reply(reply: asyncio.Future[Any]) -> None:
    if not reply.cancelled():
        reply.exception()


class ClusterAuthThrottle(AuthThrottle):
    """`LoginThrottle` of a cluster node: `AuthThrottle`'s decisions on a table that
    also holds the other nodes' failures (module docstring)."""

    def __init__(
        self,
        node: ClusterNode,
        options: ThrottleOptions | None = None,
        attempt_ttl: float = 60.0,
        *,
        recorder: RedisRecorder | None = None,
        clock: Callable[[], float] = _loop_time,
    ) -> None:
        super().__init__(options, attempt_ttl)
        self._node = node
        self._clock = clock
        self._recorder = recorder if recorder is not None else RedisRecorder(node)
        self._failure = self._recorder.script(_FAILURE)
        self._success = self._recorder.script(_SUCCESS)
        self.channel = node.key("throttle", "login")
        self._channel = _raw(self.channel)
        opts = self.options
        self._windows = (
            _ms(opts.address.window),
            _ms(opts.account.window),
            _ms(max(opts.address.window, opts.account.window)),
        )
        node.subscribe(self.channel, self._received)
        node.on_reconnect(self._resync_in_background)
        self._seeding: asyncio.Task[int] | None = None
        #: trust marks of this loop turn (successes with nothing to forgive), sent
        #: together as one PUBLISH at the turn's end
        self._trust: list[str] = []

    @property
    def recorder(self) -> RedisRecorder:
        return self._recorder

    def resync(self) -> asyncio.Task[int]:
        """Read Redis's counters in the background (`seed`): at start, and after Redis
        returns (messages may have been missed meanwhile).  Never lowers a count."""
        if self._seeding is None or self._seeding.done():
            self._seeding = asyncio.get_running_loop().create_task(self._seed_logged())
        return self._seeding

    def _resync_in_background(self) -> None:
        self.resync()  # not awaited: the node's listener must go on meanwhile

    async def _seed_logged(self) -> int:
        try:
            read = await self.seed()
        except (RedisError, OSError) as exc:
            log.warning("cluster: could not read the shared login counters (%s)", exc)
            return 0
        if read:
            log.info("cluster: %d shared login failure counters read", read)
        return read

    # ------------------------------------------------------------ the calls

    def failed(
        self, address: str | None, account: str | None, now: float, *, reserved: bool = True
    ) -> FailureRecord:
        akey = self.place(address)
        if akey is None:
            return super().failed(address, account, now, reserved=reserved)
        ukey = None if account is None else account_key(account)
        trusted = self._trusted_pair(ukey, akey, now)
        record = super().failed(address, account, now, reserved=reserved)
        self._record_failure(akey, ukey, record.delay, trusted)
        return record

    def succeeded(
        self, address: str | None, account: str, now: float, *, reserved: bool = True
    ) -> None:
        where = self._places.mapping.get(address, _UNSEEN)  # `place`, inlined
        if where is _UNSEEN:
            where = self._locate(address)
        if where is None:
            super().succeeded(address, account, now, reserved=reserved)
            return
        akey = where.key
        ukey = account_key(account)
        # Only a success that changes something elsewhere is sent: one that forgives
        # failures, or that trusts a pair the cluster does not trust yet.  A login
        # from a trusted pair with nothing to forgive (the common case) sends nothing.
        pair = (ukey, akey)
        trust = self._trusted.mapping.get(pair)  # a peek: `succeeded` touches it
        # Failures to forgive, from any node (the merged counts show them): the
        # pair's count in Redis is what the script forgives.
        held = self._addresses.mapping.get(akey)
        owner = self._accounts.mapping.get(ukey)
        forgive = (
            pair in self._pairs.mapping
            or (held is not None and held.failures > 0)
            or (owner is not None and owner.failures > 0)
        )
        news = forgive or trust is None or trust.expires <= now
        super().succeeded(address, account, now, reserved=reserved)
        if not news:
            return
        if forgive:  # counted in Redis
            message = json.dumps(["s", self._node.name, akey, ukey])[:-1]
            self._recorder.record(self._success, self._keys(akey, ukey), [self._channel, message])
            return
        # Only a trust mark, which Redis does not keep: published with this turn's
        # others (a login from a new pair costs a list append, not a script).
        if not self._trust:
            asyncio.get_running_loop().call_soon(self._send_trust)
        self._trust.append(json.dumps(["s", self._node.name, akey, ukey, 0]))

    def _send_trust(self) -> None:
        marks, self._trust = self._trust, []
        reply = self._node.send("PUBLISH", self.channel, "\n".join(marks))
        reply.add_done_callback(_ignore_reply)  # a mark lost in an outage is only a mark

    # ------------------------------------------------------------ shared counts

    async def seed(self, batch: int = 500) -> int:
        """Read every address and account counter Redis holds into this table: a node
        that starts while the others run must not give an address it has not heard
        of yet its free failures again.  Returns how many counters were read."""
        redis = self._node.redis
        read = 0
        for kind, window in (
            ("a", self.options.address.window),
            ("u", self.options.account.window),
        ):
            prefix = _raw(self._node.key("throttle", kind, ""))
            pattern = _glob_escape(prefix) + b"*"
            keys: list[bytes] = []
            async for key in redis.scan_iter(match=pattern, count=batch):
                keys.append(key)
                if len(keys) >= batch:
                    read += await self._seed_batch(keys, kind, prefix, window)
                    keys = []
            if keys:
                read += await self._seed_batch(keys, kind, prefix, window)
        return read

    async def _seed_batch(self, keys: list[bytes], kind: str, prefix: bytes, window: float) -> int:
        async with self._node.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            answers = await pipe.execute()
        now = self._clock()
        read = 0
        for i, key in enumerate(keys):
            value, ttl = answers[2 * i], answers[2 * i + 1]
            if value is None or ttl is None or int(ttl) <= 0:
                continue  # gone meanwhile, or no expiry (not ours)
            name = key[len(prefix) :].decode("utf-8", "surrogatepass")
            failures = int(value)
            if failures <= 0:
                continue
            # The key expires `window` after the last failure (PEXPIRE at each INCR).
            last = now - max(0.0, window - int(ttl) / 1000)
            if kind == "a":
                self.merge_count(akey=name, failures=failures, last_failure=last, now=now)
            else:
                self.merge_count(ukey=name, failures=failures, last_failure=last, now=now)
            read += 1
        return read

    def _trusted_pair(self, ukey: str | None, akey: str, now: float) -> bool:
        return ukey is not None and self._is_trusted(ukey, akey, now)

    def _keys(self, akey: str, ukey: str | None) -> list[bytes]:
        u = "" if ukey is None else ukey
        pair = f"{len(u)}:{u}{akey}"
        return [
            _raw(self._node.key("throttle", "a", akey)),
            _raw(self._node.key("throttle", "u", u)),
            _raw(self._node.key("throttle", "p", pair)),
        ]

    def _record_failure(self, akey: str, ukey: str | None, hold: float, trusted: bool) -> None:
        message = json.dumps(["f", self._node.name, akey, ukey, hold, trusted])[:-1]
        a, u, p = self._windows
        self._recorder.record(
            self._failure,
            self._keys(akey, ukey),
            [self._channel, a, u, p, message, "0" if ukey is None else "1"],
        )

    def _live_address(self, key: str, now: float) -> _AddressState | None:
        """As `AuthThrottle._live_address`, and an attempt it finds abandoned (counted
        as a failure there) is recorded for the cluster too."""
        state = self._addresses.mapping.get(key)
        if state is not None and state.slots:
            for slot in state.slots:
                if not slot.resolved and not slot.parked and slot.until <= now + 1e-3:
                    self._record_failure(key, slot.account, 0.0, slot.trusted)
        return super()._live_address(key, now)

    def _received(self, data: bytes) -> None:
        if b"\n" in data:  # a turn's trust marks
            for line in data.split(b"\n"):
                self._received(line)
            return
        try:
            message = json.loads(data)
            kind, node, akey, ukey = message[:4]
        except (ValueError, TypeError):
            log.warning("cluster: unreadable throttle message dropped")
            return
        now = self._clock()
        if kind == "f":
            hold, trusted, a, u, p = message[4:9]
            mine = node == self._node.name
            self.merge_failure(
                akey,
                ukey,
                now,
                address_failures=int(a),
                account_failures=int(u),
                pair_failures=int(p),
                # the node that made it holds its slot already
                hold=0.0 if mine else float(hold),
                trusted=bool(trusted),
            )
        elif kind == "s" and node != self._node.name:
            self.merge_success(akey, ukey, now, forgiven=int(message[4]))


class ClusterRegistrationThrottle(RegistrationThrottle):
    """`RegistrationLimiter` of a cluster node: `RegistrationThrottle`'s windows,
    which also hold the attempts and accounts of the other nodes (module
    docstring)."""

    def __init__(
        self,
        node: ClusterNode,
        options: ThrottleOptions | None = None,
        *,
        recorder: RedisRecorder | None = None,
        clock: Callable[[], float] = _loop_time,
        name: str = "registration",
    ) -> None:
        """`name` tells these windows from others' in Redis (each host's ANONYMOUS
        login windows are registration windows of their own)."""
        super().__init__(options)
        self._node = node
        self._clock = clock
        self._name = name
        self._recorder = recorder if recorder is not None else RedisRecorder(node)
        self._script = self._recorder.script(_REGISTRATION)
        self.channel = node.key("throttle", name)
        self._channel = _raw(self.channel)
        limits = self.options.registration
        self._periods = (_ms(limits.address_period), _ms(limits.total_period))
        self._serial = 0
        node.subscribe(self.channel, self._received)

    @property
    def recorder(self) -> RedisRecorder:
        return self._recorder

    def attempt(self, address: str | None, now: float) -> Verdict:
        verdict = super().attempt(address, now)
        if verdict is ALLOW:
            self._record("a", address)
        return verdict

    def registered(self, address: str | None, now: float) -> None:
        super().registered(address, now)
        self._record("r", address)

    def _record(self, kind: str, address: str | None) -> None:
        key = self.place(address)
        if key is None:
            return  # exempt: counted nowhere
        self._serial += 1
        member = f"{self._node.name}:{self._node.boot_id}:{self._serial}"
        message = json.dumps([kind, self._node.name, key])[:-1]
        self._recorder.record(
            self._script,
            [
                _raw(self._node.key("throttle", self._name, "a", key)),
                _raw(self._node.key("throttle", self._name, "r", key)),
                _raw(self._node.key("throttle", self._name, "t")),
            ],
            [self._channel, kind, self._periods[0], self._periods[1], member, message],
        )

    def _received(self, data: bytes) -> None:
        try:
            _kind, _node, key, attempts, registrations, total = json.loads(data)
        except (ValueError, TypeError):
            log.warning("cluster: unreadable registration message dropped")
            return
        self.merge(
            key,
            self._clock(),
            attempts=int(attempts),
            registrations=int(registrations),
            total=int(total),
        )
