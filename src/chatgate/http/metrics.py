"""`/metrics` in Prometheus's text format (or OpenMetrics, when the scraper asks).

The figures are `administration.stats.ServerStats`'s, read at scrape time by one
custom collector in a registry of this site's own (never prometheus-client's
global default registry: two servers in one process, as tests run them, must not
see each other's metrics).  The registry also has prometheus-client's process
collector (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...).

The handler needs `Access.READ`; the admin site's middleware authenticates it
with `[admin] metrics_auth` (or `auth`), or lets loopback clients in without
credentials when `[admin] metrics_open_on_loopback` says so.

`add_metrics_route` also makes the site's `ServerStats` (started and stopped with
the application: its background task measures the event-loop lag, samples the
dashboard's series and counts the offline store) and leaves it in
`app[STATS_KEY]` for the API and the console to read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chatgate.administration.stats import ServerStats, Snapshot
from chatgate.http.admin import METRICS_PATH, requires
from chatgate.http.auth.base import Access

if TYPE_CHECKING:
    from chatgate.http.admin import AdminSite

__all__ = ["STATS_KEY", "StatsCollector", "add_metrics_route", "metrics_registry"]

#: the site's statistics, for every admin route (API stats, the console's dashboard)
STATS_KEY = web.AppKey("chatgate.stats", ServerStats)


class StatsCollector(Collector):
    """Reads one `ServerStats` snapshot per scrape and describes it as metrics
    (names prefixed `chatgate_`, units in the names, counters ending `_total`)."""

    def __init__(self, stats: ServerStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats.snapshot()
        yield from _process(s)
        yield from _connections(s)
        yield from _logins(s)
        yield from _stanzas(s)
        yield from _offline(s)
        yield from _stream_decisions(s)


def _process(s: Snapshot) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "chatgate_start_time_seconds",
        "When this server process's statistics began, in seconds since the epoch.",
        value=s.started_at,
    )
    yield GaugeMetricFamily(
        "chatgate_uptime_seconds", "Seconds this server process has run.", value=s.uptime_seconds
    )
    yield GaugeMetricFamily(
        "chatgate_event_loop_lag_seconds",
        "How late the latest measuring sleep of the event loop woke up.",
        value=s.event_loop_lag_seconds,
    )
    yield GaugeMetricFamily(
        "chatgate_event_loop_lag_max_seconds",
        "The largest event-loop lag measured since the last 10-second sample.",
        value=s.event_loop_lag_max_seconds,
    )


def _connections(s: Snapshot) -> Iterator[Metric]:
    connections = GaugeMetricFamily(
        "chatgate_connections",
        "Open client connections (bound or not), by transport.",
        labels=["transport"],
    )
    for transport, count in sorted(s.connections.items()):
        connections.add_metric([transport], count)
    yield connections
    sessions = GaugeMetricFamily(
        "chatgate_sessions", "Bound client sessions, by transport.", labels=["transport"]
    )
    for transport, count in sorted(s.sessions.items()):
        sessions.add_metric([transport], count)
    yield sessions


def _logins(s: Snapshot) -> Iterator[Metric]:
    logins = CounterMetricFamily(
        "chatgate_logins",
        "Login attempts by protocol (xmpp, or the media server's), mechanism or method, "
        "and outcome (succeeded, failed, rejected, throttled, released, left).",
        labels=["protocol", "mechanism", "outcome"],
    )
    for (protocol, mechanism, outcome), count in sorted(s.logins.items()):
        logins.add_metric([protocol, mechanism, outcome], count)
    yield logins
    t = s.throttle
    if t.throttled_addresses is not None:
        yield GaugeMetricFamily(
            "chatgate_throttled_addresses",
            "Client addresses whose failed logins are being held now.",
            value=t.throttled_addresses,
        )
    if t.tracked_addresses is not None:
        yield GaugeMetricFamily(
            "chatgate_throttle_tracked_addresses",
            "Client addresses brute-force protection counts now (failures within the "
            "window, or attempts in flight).",
            value=t.tracked_addresses,
        )
    yield CounterMetricFamily(
        "chatgate_login_held_failures",
        "Failed logins whose answer brute-force protection held back.",
        value=t.held_failures,
    )
    yield CounterMetricFamily(
        "chatgate_login_held_seconds",
        "Seconds failed logins' answers were held, in all.",
        value=t.held_seconds,
    )
    yield CounterMetricFamily(
        "chatgate_login_refusals",
        "Login attempts refused unevaluated (all of an address's or account's slots taken).",
        value=t.refusals,
    )


def _stanzas(s: Snapshot) -> Iterator[Metric]:
    stanzas = CounterMetricFamily(
        "chatgate_stanzas",
        "Stanzas received from bound sessions (in) and written to them (out).",
        labels=["direction"],
    )
    stanzas.add_metric(["in"], s.stanzas_received)
    stanzas.add_metric(["out"], s.stanzas_sent)
    yield stanzas


def _offline(s: Snapshot) -> Iterator[Metric]:
    o = s.offline
    if o is None:
        return  # not counted yet: no figure is better than a false 0
    yield GaugeMetricFamily(
        "chatgate_offline_messages", "Messages stored for offline accounts.", value=o.messages
    )
    yield GaugeMetricFamily(
        "chatgate_offline_bytes", "Bytes of the stored offline messages.", value=o.bytes
    )
    yield GaugeMetricFamily(
        "chatgate_offline_accounts",
        "Accounts with at least one offline message waiting.",
        value=o.accounts,
    )
    yield GaugeMetricFamily(
        "chatgate_offline_largest_queue_messages",
        "Offline messages waiting for the account that has the most.",
        value=o.largest_queue,
    )
    yield GaugeMetricFamily(
        "chatgate_offline_census_timestamp_seconds",
        "When the offline store was last counted (every 60 s), in seconds since the epoch.",
        value=o.taken_at,
    )


def _stream_decisions(s: Snapshot) -> Iterator[Metric]:
    if s.stream_decisions is None:
        return  # the stream authority is off
    decisions = CounterMetricFamily(
        "chatgate_stream_decisions",
        "Stream-authority decisions by media-server adapter, action and verdict.",
        labels=["adapter", "action", "verdict"],
    )
    for (adapter, action, verdict), count in sorted(s.stream_decisions.items()):
        decisions.add_metric([adapter, action, verdict], count)
    yield decisions


def metrics_registry(stats: ServerStats) -> CollectorRegistry:
    """A registry of one site's own: the stats collector and the process collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats))
    ProcessCollector(registry=registry)
    return registry


def add_metrics_route(app: web.Application, site: AdminSite) -> None:
    """Add `/metrics` to `app`, with the site's `ServerStats` in `app[STATS_KEY]`."""
    stats = ServerStats(site.ctx)
    registry = metrics_registry(stats)
    app[STATS_KEY] = stats

    async def running(_app: web.Application) -> AsyncIterator[None]:
        await stats.start()
        yield
        await stats.close()

    app.cleanup_ctx.append(running)

    @requires(Access.READ)
    async def metrics(request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(
            body=encode(registry),
            headers={"Content-Type": content_type, "Cache-Control": "no-store"},
        )

    app.router.add_get(METRICS_PATH, metrics)
