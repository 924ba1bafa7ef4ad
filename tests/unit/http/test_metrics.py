"""`/metrics` served by aiohttp with the admin site's real middleware, over a real
server context (tests/unit/modules/wire.py); the exposition is parsed back with
prometheus-client's own parser and its values must move after real actions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from chatgate.http.admin import AdminSite
from chatgate.http.admin_options import AdminOptions
from chatgate.http.auth.base import AuthChain
from chatgate.http.metrics import STATS_KEY, add_metrics_route
from chatgate.vocabulary.facts import ConnectionFacts
from tests.unit.modules.wire import Server, plain

Values = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await Server.start(tmp_path, {})
    try:
        await srv.add_user("alice", "wonderland")
        await srv.add_user("bob", "builder")
        yield srv
    finally:
        await srv.stop()


def facts(request: web.Request) -> ConnectionFacts:
    return ConnectionFacts(domain="localhost", remote_address=request.remote)


async def client_for(
    srv: Server, options: AdminOptions, chain: AuthChain | None = None
) -> TestClient[web.Request, web.Application]:
    site = AdminSite(srv.ctx, options, facts)
    if chain is not None:
        site.chains["metrics"] = chain
    app = web.Application()
    add_metrics_route(app, site)
    app.middlewares.append(site.middleware)
    app[STATS_KEY].snapshot_ttl = 0  # each scrape sees what just happened
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


OPEN = AdminOptions(enabled=True, metrics_open_on_loopback=True)


class Scraper:
    """A test client of the app, and the app's statistics."""

    def __init__(self, client: TestClient[web.Request, web.Application]) -> None:
        self.client = client
        self.stats = client.app[STATS_KEY]

    async def __call__(self) -> Values:
        response = await self.client.get("/metrics")
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(await response.text())


@pytest.fixture
async def scrape(server: Server) -> AsyncIterator[Scraper]:
    client = await client_for(server, OPEN)
    scraper = Scraper(client)
    assert scraper.stats._task is not None  # started with the application
    try:
        yield scraper
    finally:
        await client.close()
    assert scraper.stats._task is None  # and stopped with it


def parse(text: str) -> Values:
    values: Values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(values: Values, name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_counters_move_after_logins_and_messages(server: Server, scrape: Scraper) -> None:
    before = await scrape()
    assert value(before, "chatgate_connections", transport="tls") == 0
    assert ("chatgate_uptime_seconds", ()) in before
    assert ("chatgate_event_loop_lag_seconds", ()) in before
    assert ("process_resident_memory_bytes", ()) in before

    alice, bob = server.connect(), server.connect()
    await alice.login_plain("alice", "wonderland", "a")
    await bob.login_plain("bob", "builder", "b")
    await bob.send("<presence/>")
    for n in range(3):
        await alice.send(
            f"<message to='bob@localhost' type='chat' id='{n}'><body>x</body></message>"
        )
    wrong = server.connect()
    await wrong.open()
    assert "not-authorized" in await wrong.send(plain("bob", "not-his"))

    after = await scrape()
    assert value(after, "chatgate_connections", transport="tls") == 3
    assert value(after, "chatgate_sessions", transport="tls") == 2
    login = {"protocol": "xmpp", "mechanism": "PLAIN"}
    assert value(after, "chatgate_logins_total", **login, outcome="succeeded") == (
        value(before, "chatgate_logins_total", **login, outcome="succeeded") + 2
    )
    assert value(after, "chatgate_logins_total", **login, outcome="failed") == (
        value(before, "chatgate_logins_total", **login, outcome="failed") + 1
    )
    stanzas_in = value(after, "chatgate_stanzas_total", direction="in")
    assert stanzas_in >= value(before, "chatgate_stanzas_total", direction="in") + 4
    stanzas_out = value(after, "chatgate_stanzas_total", direction="out")
    assert stanzas_out >= value(before, "chatgate_stanzas_total", direction="out") + 3


async def test_offline_figures_are_counted_apart_from_scrapes(
    server: Server, scrape: Scraper
) -> None:
    alice = server.connect()
    await alice.login_plain("alice", "wonderland")
    for n in range(2):
        await alice.send(f"<message to='bob@localhost' type='chat'><body>{n}</body></message>")
    await scrape.stats.refresh_offline()  # what the stats task does every 60 s
    counted = await scrape()
    assert value(counted, "chatgate_offline_messages") == 2
    assert value(counted, "chatgate_offline_largest_queue_messages") == 2
    assert value(counted, "chatgate_offline_accounts") == 1
    assert value(counted, "chatgate_offline_bytes") > 0
    # A scrape never queries the store: a new message shows at the next census only.
    await alice.send("<message to='bob@localhost' type='chat'><body>late</body></message>")
    assert value(await scrape(), "chatgate_offline_messages") == 2
    await scrape.stats.refresh_offline()
    assert value(await scrape(), "chatgate_offline_messages") == 3


async def test_without_credentials_the_scrape_is_refused(server: Server) -> None:
    closed = AdminOptions(enabled=True, metrics_open_on_loopback=False)
    client = await client_for(server, closed, AuthChain([]))
    try:
        response = await client.get("/metrics")
        assert response.status == 401
        assert "chatgate_" not in await response.text()
    finally:
        await client.close()


async def test_openmetrics_when_the_scraper_asks(server: Server) -> None:
    client = await client_for(server, OPEN)
    try:
        response = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await response.text()
        assert text.rstrip().endswith("# EOF")
        assert "chatgate_logins_total" in text or "chatgate_logins" in text
    finally:
        await client.close()


async def test_the_global_registry_is_left_alone(server: Server, scrape: Scraper) -> None:
    await scrape()
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("chatgate")]
