"""The dashboard: live counts and the last hour's charts, from the site's
`ServerStats` (the same figures `/metrics` and the API read)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from chatgate.http.auth.base import Access
from chatgate.http.console.charts import Series, line_chart
from chatgate.http.console.site import BASE, Console, Page

if TYPE_CHECKING:
    from chatgate.administration.stats import ServerStats


def _stats(request: web.Request) -> ServerStats:
    from chatgate.http.metrics import STATS_KEY

    return request.app[STATS_KEY]


async def dashboard(page: Page) -> web.StreamResponse:
    stats = _stats(page.request)
    now = stats.snapshot()
    logins = failures = 0
    for (_protocol, _mechanism, outcome), count in now.logins.items():
        if outcome == "succeeded":
            logins += count
        elif outcome in ("failed", "rejected", "throttled"):
            failures += count
    series = stats.series()
    charts = [
        line_chart(
            "Connections and sessions",
            [
                Series("connections", [(s.at, s.connections) for s in series]),
                Series("sessions", [(s.at, s.sessions) for s in series]),
            ],
        ),
        line_chart(
            "Stanzas per second",
            [
                Series("received", [(s.at, s.stanzas_received_per_second) for s in series]),
                Series("sent", [(s.at, s.stanzas_sent_per_second) for s in series]),
            ],
        ),
    ]
    return page.render(
        "dashboard.html",
        {
            "title": "Dashboard",
            "now": now,
            "logins": logins,
            "failures": failures,
            "charts": charts,
            "refresh": int(stats.sample_interval),
        },
    )


def add_dashboard_routes(app: web.Application, console: Console) -> None:
    app.router.add_get(f"{BASE}/", console.guarded(Access.READ, dashboard))
