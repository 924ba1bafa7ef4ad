"""`/stats` and `/config`: the server's figures and its configuration (redacted)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict

from chatgate.administration.configuration import redacted_config
from chatgate.administration.stats import ServerStats, Snapshot
from chatgate.http.api.models import Model
from chatgate.http.api.operation import Call, Operation
from chatgate.http.auth.base import Access


class LoginCount(Model):
    protocol: str
    mechanism: str
    outcome: str
    count: int


class DecisionCount(Model):
    adapter: str
    action: str
    verdict: str
    count: int


class ThrottleOut(Model):
    tracked_addresses: int | None
    throttled_addresses: int | None
    """Addresses whose login failures are being held now."""
    held_failures: int
    held_seconds: float
    refusals: int


class OfflineOut(Model):
    messages: int
    bytes: int
    accounts: int
    largest_queue: int
    taken_at: datetime


class StatsOut(Model):
    """This server process's figures (counters since it started)."""

    pid: int
    taken_at: datetime
    started_at: datetime
    uptime_seconds: float
    connections: dict[str, int]
    """Open client connections by transport (tcp, tls, websocket, bosh)."""
    sessions: dict[str, int]
    """Bound sessions by transport."""
    connections_total: int
    sessions_total: int
    logins: list[LoginCount]
    throttle: ThrottleOut
    stanzas_received: int
    stanzas_sent: int
    stanzas_received_per_second: float
    stanzas_sent_per_second: float
    offline: OfflineOut | None
    """Null until the first census."""
    stream_decisions: list[DecisionCount] | None
    """Null when the stream authority is off."""
    event_loop_lag_seconds: float
    event_loop_lag_max_seconds: float


class ConfigOut(Model):
    """The resolved configuration, section by section, secrets replaced by `***`."""

    model_config = ConfigDict(extra="allow")

    server: dict[str, Any]


def _when(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def stats_out(s: Snapshot) -> StatsOut:
    offline = s.offline
    return StatsOut(
        pid=s.pid,
        taken_at=_when(s.taken_at),
        started_at=_when(s.started_at),
        uptime_seconds=s.uptime_seconds,
        connections=dict(s.connections),
        sessions=dict(s.sessions),
        connections_total=s.connections_total,
        sessions_total=s.sessions_total,
        logins=[
            LoginCount(protocol=p, mechanism=m, outcome=o, count=n)
            for (p, m, o), n in sorted(s.logins.items())
        ],
        throttle=ThrottleOut(
            tracked_addresses=s.throttle.tracked_addresses,
            throttled_addresses=s.throttle.throttled_addresses,
            held_failures=s.throttle.held_failures,
            held_seconds=s.throttle.held_seconds,
            refusals=s.throttle.refusals,
        ),
        stanzas_received=s.stanzas_received,
        stanzas_sent=s.stanzas_sent,
        stanzas_received_per_second=s.stanzas_received_per_second,
        stanzas_sent_per_second=s.stanzas_sent_per_second,
        offline=None
        if offline is None
        else OfflineOut(
            messages=offline.messages,
            bytes=offline.bytes,
            accounts=offline.accounts,
            largest_queue=offline.largest_queue,
            taken_at=_when(offline.taken_at),
        ),
        stream_decisions=None
        if s.stream_decisions is None
        else [
            DecisionCount(adapter=a, action=act, verdict=v, count=n)
            for (a, act, v), n in sorted(s.stream_decisions.items())
        ],
        event_loop_lag_seconds=s.event_loop_lag_seconds,
        event_loop_lag_max_seconds=s.event_loop_lag_max_seconds,
    )


def _stats(call: Call) -> ServerStats:
    from chatgate.http.metrics import STATS_KEY

    stats = call.request.app.get(STATS_KEY)
    if stats is None:  # no /metrics on this app: figures without the background task
        stats = ServerStats(call.ctx)
    return stats


async def get_stats(call: Call) -> StatsOut:
    return stats_out(_stats(call).snapshot())


async def get_config(call: Call) -> ConfigOut:
    return ConfigOut.model_validate(redacted_config(call.ctx.config))


OPERATIONS = (
    Operation(
        "GET",
        "/stats",
        get_stats,
        "Server statistics",
        "server",
        response=StatsOut,
        description="Connections and sessions by transport, logins by mechanism and"
        " outcome, brute-force protection, stanzas and their rates, offline queues, stream"
        " decisions, event-loop lag: this process's figures.",
    ),
    Operation(
        "GET",
        "/config",
        get_config,
        "The configuration (secrets redacted)",
        "server",
        access=Access.ADMIN,
        response=ConfigOut,
        description="The configuration the server runs with; every password, secret,"
        " token and URL credential is replaced by `***`.",
    ),
)
