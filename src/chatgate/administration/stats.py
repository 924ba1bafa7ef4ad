"""Server statistics: what `/metrics`, the API's stats and the console's dashboard read.

`ServerStats(ctx)` gathers, at the moment it is asked (`snapshot`), what the
server already counts elsewhere: client connections and bound sessions by
transport (`ctx.connections`), logins by protocol, mechanism and outcome (the
login gate's `LoginCounters`), brute-force protection (the login throttle),
stanzas received and sent (`xmpp.session.STANZAS`), stream-authority decisions
(`DecisionCounters`, when `[streams]` is on); and it keeps what nobody else
does: event-loop lag, the offline-queue census and a bounded time series.

Every figure is **this process's**: several server processes each keep their
own, and a cluster layer sums them (through the same interfaces: the gate's
counters, the decision counters, `StanzaSource`, `OfflineCensus`).

Cost rules (a scrape may come from anywhere the operator allows):

- `snapshot` never awaits and never queries the database; its connection census
  walks `ctx.connections` at most once per `snapshot_ttl` seconds, however often
  it is asked;
- the offline census is one aggregate query, run by the background task every
  `offline_interval` seconds, never because somebody asked;
- the background task (`start`/`close`) wakes every `lag_interval` seconds to
  measure how late its sleep ends (the event-loop lag) and takes a sample of
  the series every `sample_interval` seconds; the series keeps `history`
  samples (an hour at the defaults).

Nothing here touches the hot path: the stanza counts are plain integers the
router increments inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from chatgate.auth.throttle import AuthThrottle
from chatgate.xmpp.c2s import C2SConnection
from chatgate.xmpp.session import STANZAS

if TYPE_CHECKING:
    from chatgate.context import ServerContext
    from chatgate.storage.database import Database

__all__ = [
    "TRANSPORTS",
    "OfflineCensus",
    "OfflineTotals",
    "Sample",
    "ServerStats",
    "Snapshot",
    "StanzaSource",
    "ThrottleFigures",
]

log = logging.getLogger(__name__)

#: The transports every snapshot names, with 0 when none is open.
TRANSPORTS = ("tcp", "tls", "websocket", "bosh")
#: What a connection that is not a client connection driver is counted as.
OTHER_TRANSPORT = "other"


class StanzaSource(Protocol):
    """Stanzas received from and sent to bound sessions, since start (they only grow)."""

    @property
    def received(self) -> int: ...

    @property
    def sent(self) -> int: ...


@dataclass(frozen=True, slots=True)
class OfflineTotals:
    """The offline store (XEP-0160) as a whole."""

    messages: int
    bytes: int
    #: accounts with at least one message waiting
    accounts: int
    #: messages waiting for the account that has the most
    largest_queue: int
    #: wall-clock time (seconds since the epoch) the census was taken
    taken_at: float


class OfflineCensus(Protocol):
    """Counts the offline store; one query, however many messages."""

    async def totals(self) -> tuple[int, int, int, int]:
        """(messages, bytes, accounts with messages, largest queue)."""
        ...


@runtime_checkable
class ThrottledAddressCount(Protocol):
    """A login throttle that can say how many addresses it holds failures of now."""

    def throttled_addresses(self, now: float) -> int: ...


@dataclass(frozen=True, slots=True)
class ThrottleFigures:
    """Brute-force protection of logins (`auth/throttle/`)."""

    #: addresses with failures in their window or attempts in flight (None: the
    #: throttle does not say)
    tracked_addresses: int | None
    #: addresses whose failures are being held now (None: the throttle does not say)
    throttled_addresses: int | None
    #: failures whose answer was held, and the seconds held in all
    held_failures: int
    held_seconds: float
    #: attempts refused unevaluated (every slot of the address or account taken)
    refusals: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One process's figures at one moment; counters only grow, gauges move."""

    pid: int
    #: wall-clock time (seconds since the epoch) the snapshot was taken, and started
    taken_at: float
    started_at: float
    uptime_seconds: float
    #: open client connections (bound or not) and bound sessions, by transport
    connections: Mapping[str, int]
    sessions: Mapping[str, int]
    #: (protocol, mechanism, outcome) -> logins
    logins: Mapping[tuple[str, str, str], int]
    throttle: ThrottleFigures
    stanzas_received: int
    stanzas_sent: int
    #: over the last sample interval (since start, before the first sample)
    stanzas_received_per_second: float
    stanzas_sent_per_second: float
    #: None until the first census (the background task takes it at start)
    offline: OfflineTotals | None
    #: (adapter, action, verdict) -> decisions; None when the stream authority is off
    stream_decisions: Mapping[tuple[str, str, str], int] | None
    #: how late the latest measuring sleep woke up, and the most since the last sample
    event_loop_lag_seconds: float
    event_loop_lag_max_seconds: float

    @property
    def connections_total(self) -> int:
        return sum(self.connections.values())

    @property
    def sessions_total(self) -> int:
        return sum(self.sessions.values())


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of the dashboard's charts."""

    at: float  # wall-clock seconds since the epoch
    connections: int
    sessions: int
    stanzas_received_per_second: float
    stanzas_sent_per_second: float
    event_loop_lag_max_seconds: float


class DatabaseOfflineCensus:
    """`OfflineCensus` over the server's database (`OfflineRepository.totals`)."""

    def __init__(self, db: Database) -> None:
        self._offline = db.offline

    async def totals(self) -> tuple[int, int, int, int]:
        return await self._offline.totals()


class ServerStats:
    """This process's statistics; see the module docstring for what each costs.

    `start` runs the background task (lag, samples, offline census); without it
    `snapshot` still answers, with no lag measured, no offline census and an
    empty series."""

    def __init__(
        self,
        ctx: ServerContext,
        *,
        stanzas: StanzaSource = STANZAS,
        offline: OfflineCensus | None = None,
        sample_interval: float = 10.0,
        history: int = 360,
        lag_interval: float = 0.5,
        offline_interval: float = 60.0,
        snapshot_ttl: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if min(sample_interval, lag_interval, offline_interval) <= 0 or history < 1:
            raise ValueError("intervals must be positive and history at least 1")
        self.ctx = ctx
        self.stanzas = stanzas
        self.offline_census = offline if offline is not None else DatabaseOfflineCensus(ctx.db)
        self.sample_interval = sample_interval
        self.lag_interval = lag_interval
        self.offline_interval = offline_interval
        self.snapshot_ttl = snapshot_ttl
        self._monotonic = monotonic
        self._wall = wall
        self._started = monotonic()
        self._started_at = wall()
        self._series: deque[Sample] = deque(maxlen=history)
        # The counts at the last sample, for the per-second rates.
        self._mark = (self._started, stanzas.received, stanzas.sent)
        self._rates = (0.0, 0.0)
        self._sampled = False
        self._lag = 0.0
        self._lag_max = 0.0
        self._offline: OfflineTotals | None = None
        self._cached: tuple[float, Snapshot] | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the background task (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="chatgate-stats")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sample = loop.time() + self.sample_interval
        next_census = loop.time()  # at once: the first scrape should have it
        while True:
            if loop.time() >= next_census:
                next_census = loop.time() + self.offline_interval
                try:
                    await self.refresh_offline()
                except Exception:  # a database hiccup must not end the measuring
                    log.exception("stats: counting the offline messages failed")
            before = loop.time()
            await asyncio.sleep(self.lag_interval)
            now = loop.time()
            self.record_lag(max(0.0, now - before - self.lag_interval))
            if now >= next_sample:
                next_sample = now + self.sample_interval
                self.take_sample()

    # ------------------------------------------------------------ measurements

    def record_lag(self, seconds: float) -> None:
        """How late a sleep woke up (the background task's measure)."""
        self._lag = seconds
        if seconds > self._lag_max:
            self._lag_max = seconds

    async def refresh_offline(self) -> OfflineTotals:
        """Count the offline store now (the background task calls this every
        `offline_interval` seconds)."""
        messages, size, accounts, largest = await self.offline_census.totals()
        self._offline = OfflineTotals(messages, size, accounts, largest, self._wall())
        return self._offline

    def take_sample(self) -> Sample:
        """Close the current interval: its stanza rates and largest lag become the
        latest sample of the series (the background task calls this every
        `sample_interval` seconds)."""
        now = self._monotonic()
        received, sent = self.stanzas.received, self.stanzas.sent
        then, received_before, sent_before = self._mark
        elapsed = now - then
        if elapsed > 0:
            self._rates = ((received - received_before) / elapsed, (sent - sent_before) / elapsed)
        self._mark = (now, received, sent)
        self._sampled = True
        connections, sessions = self._census()
        sample = Sample(
            at=self._wall(),
            connections=sum(connections.values()),
            sessions=sum(sessions.values()),
            stanzas_received_per_second=self._rates[0],
            stanzas_sent_per_second=self._rates[1],
            event_loop_lag_max_seconds=self._lag_max,
        )
        self._series.append(sample)
        self._lag_max = self._lag
        self._cached = None
        return sample

    def series(self) -> list[Sample]:
        """The samples kept, oldest first (at most `history`)."""
        return list(self._series)

    # ------------------------------------------------------------ the snapshot

    def snapshot(self) -> Snapshot:
        """The figures now (the connection census at most `snapshot_ttl` seconds old)."""
        now = self._monotonic()
        cached = self._cached
        if cached is not None and now - cached[0] < self.snapshot_ttl:
            return cached[1]
        snapshot = self._take(now)
        self._cached = (now, snapshot)
        return snapshot

    def _take(self, now: float) -> Snapshot:
        ctx = self.ctx
        connections, sessions = self._census()
        received, sent = self.stanzas.received, self.stanzas.sent
        if self._sampled:
            received_rate, sent_rate = self._rates
        else:
            elapsed = now - self._started
            received_rate = (received - self._mark[1]) / elapsed if elapsed > 0 else 0.0
            sent_rate = (sent - self._mark[2]) / elapsed if elapsed > 0 else 0.0
        logins = {
            (protocol, mechanism, outcome.value): count
            for (protocol, mechanism, outcome), count in ctx.login_gate.counters.snapshot().items()
        }
        streams = ctx.streams
        decisions = None if streams is None else dict(streams.authority.counters.snapshot())
        return Snapshot(
            pid=os.getpid(),
            taken_at=self._wall(),
            started_at=self._started_at,
            uptime_seconds=now - self._started,
            connections=connections,
            sessions=sessions,
            logins=logins,
            throttle=self._throttle(),
            stanzas_received=received,
            stanzas_sent=sent,
            stanzas_received_per_second=received_rate,
            stanzas_sent_per_second=sent_rate,
            offline=self._offline,
            stream_decisions=decisions,
            event_loop_lag_seconds=self._lag,
            event_loop_lag_max_seconds=self._lag_max,
        )

    def _census(self) -> tuple[dict[str, int], dict[str, int]]:
        """Open connections and bound sessions by transport (one walk of the set)."""
        connections = dict.fromkeys(TRANSPORTS, 0)
        sessions = dict.fromkeys(TRANSPORTS, 0)
        for conn in list(self.ctx.connections):
            if isinstance(conn, C2SConnection):
                name = conn.transport.name
                bound = conn.session is not None
            else:
                name, bound = OTHER_TRANSPORT, False
            connections[name] = connections.get(name, 0) + 1
            if bound:
                sessions[name] = sessions.get(name, 0) + 1
        return connections, sessions

    def _throttle(self) -> ThrottleFigures:
        throttle = self.ctx.auth_throttle
        stats = throttle.stats
        tracked = throttle.sizes()["addresses"] if isinstance(throttle, AuthThrottle) else None
        throttled = (
            throttle.throttled_addresses(_loop_time())
            if isinstance(throttle, ThrottledAddressCount)
            else None
        )
        return ThrottleFigures(
            tracked_addresses=tracked,
            throttled_addresses=throttled,
            held_failures=stats.delays,
            held_seconds=stats.delay_seconds,
            refusals=stats.refusals,
        )


def _loop_time() -> float:
    """The clock the login gate gives its throttle: the running loop's."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
