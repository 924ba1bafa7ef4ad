"""`/metrics` of the real server (`chatgate serve`), scraped over HTTP while slixmpp
clients log in, fail to log in and exchange messages, and a raw RFC 7395 client
logs in over WebSocket; the exposition is read back with prometheus-client's own
parser."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.docblocks import blocks, commands, shell_block
from tests.e2e.conftest import AuthenticationFailed, RunningServer, connect, logged_in
from tests.e2e.web import WsClient, start_web_server

pytestmark = pytest.mark.e2e

Values = dict[tuple[str, tuple[tuple[str, str], ...]], float]

ADMIN_OPEN = """
[admin]
enabled = true
metrics_open_on_loopback = true
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = start_web_server(tmp_path_factory.mktemp("metrics"), ADMIN_OPEN)
    try:
        srv.add_user("alice", "wonderland")
        srv.add_user("bob", "builder-bob")
        yield srv
    finally:
        code = srv.stop()
    assert code == 0, srv.log_text()
    assert "Traceback" not in srv.log_text(), srv.log_text()


async def scrape(server: RunningServer, **kw: object) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.http_port}/metrics", **kw) as response,  # type: ignore[arg-type]
    ):
        return response.status, await response.text()


def parse(text: str) -> Values:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(values: Values, name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def logins(values: Values, outcome: str) -> float:
    """Logins over XMPP with `outcome`, whatever the mechanism."""
    return sum(
        v
        for (name, labels), v in values.items()
        if name == "chatgate_logins_total"
        and ("outcome", outcome) in labels
        and ("protocol", "xmpp") in labels
    )


async def metrics(server: RunningServer, **kw: object) -> Values:
    status, text = await scrape(server, **kw)
    assert status == 200, text
    return parse(text)


async def settled(server: RunningServer, check, timeout: float = 10.0, **kw: object) -> Values:  # type: ignore[no-untyped-def]
    """Scrape until `check(values)` holds (a snapshot is cached for up to a second)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        values = await metrics(server, **kw)
        if check(values) or asyncio.get_running_loop().time() > deadline:
            return values
        await asyncio.sleep(0.2)


async def test_counters_move_with_real_clients(server: RunningServer) -> None:
    before = await metrics(server)
    assert ("chatgate_uptime_seconds", ()) in before
    assert ("chatgate_event_loop_lag_seconds", ()) in before

    async with (
        logged_in(server, "alice@localhost", "wonderland") as alice,
        logged_in(server, "bob@localhost", "builder-bob") as bob,
    ):
        for n in range(5):
            alice.send_message(mto="bob@localhost", mbody=f"hello {n}", mtype="chat")
        for _ in range(5):
            await bob.next_message()
        with pytest.raises(AuthenticationFailed):
            await connect(server, "bob@localhost", "not-bobs-password")
        async with WsClient(f"ws://127.0.0.1:{server.http_port}/xmpp-websocket") as ws:
            await ws.login("alice", "wonderland")
            await ws.bind("web")

            def moved(v: Values) -> bool:
                return (
                    value(v, "chatgate_sessions", transport="tcp") == 2
                    and value(v, "chatgate_sessions", transport="websocket") == 1
                    and logins(v, "failed") > logins(before, "failed")
                )

            during = await settled(server, moved)
        assert value(during, "chatgate_connections", transport="tcp") >= 2
        assert value(during, "chatgate_sessions", transport="tcp") == 2
        assert value(during, "chatgate_sessions", transport="websocket") == 1
        assert logins(during, "succeeded") >= logins(before, "succeeded") + 3
        # slixmpp tries each offered mechanism before it gives up: one failure each
        assert logins(during, "failed") >= logins(before, "failed") + 1
        received = value(during, "chatgate_stanzas_total", direction="in")
        assert received >= value(before, "chatgate_stanzas_total", direction="in") + 5
        sent = value(during, "chatgate_stanzas_total", direction="out")
        assert sent >= value(before, "chatgate_stanzas_total", direction="out") + 5

    after = await settled(server, lambda v: value(v, "chatgate_sessions", transport="tcp") == 0)
    assert value(after, "chatgate_sessions", transport="tcp") == 0
    assert value(after, "chatgate_sessions", transport="websocket") == 0


async def test_types_offline_census_and_process_metrics(server: RunningServer) -> None:
    status, text = await scrape(server)
    assert status == 200
    # the stats task counted the offline store when the listener started
    assert "# TYPE chatgate_offline_messages gauge" in text
    assert "# TYPE chatgate_logins_total counter" in text
    assert "# TYPE chatgate_connections gauge" in text
    assert "process_resident_memory_bytes" in text


PAGE = "docs/metrics.md"


def run_documented(name: str, cwd: Path, port: int) -> list[str]:
    """Run a shell block of the page as written (its port replaced by the test
    server's); returns each command's output."""
    outputs = []
    for command in commands(shell_block(PAGE, name)):
        command = command.replace("127.0.0.1:5280", f"127.0.0.1:{port}")
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        outputs.append(done.stdout)
    return outputs


def test_the_documented_protection(tmp_path: Path) -> None:
    """docs/metrics.md's configuration, password-file line and curl commands: the
    readOnly scraper gets the metrics, a request without credentials a 401."""
    run_documented("metrics-password-file", tmp_path, 0)
    config = next(b for b in blocks("toml") if b.page == PAGE and "metrics_auth" in b.text)
    server = start_web_server(tmp_path, config.text)
    try:
        server.add_user("alice", "wonderland")
        with_password, without = run_documented("metrics-curl", tmp_path, server.http_port)
        assert with_password.startswith('chatgate_sessions{transport="'), with_password
        assert without.strip() == "401"
        asyncio.run(_admin_logins_are_counted(server))
    finally:
        code = server.stop()
    assert code == 0, server.log_text()
    assert "Traceback" not in server.log_text(), server.log_text()


async def _admin_logins_are_counted(server: RunningServer) -> None:
    right = {"Authorization": aiohttp.encode_basic_auth("prometheus", "scrape-secret")}
    wrong = {"Authorization": aiohttp.encode_basic_auth("prometheus", "not-the-secret")}
    status, text = await scrape(server, headers=wrong)
    assert status == 401 and "chatgate_" not in text
    admin = {"protocol": "http-admin", "mechanism": "basic"}

    def counted(v: Values) -> bool:
        return value(v, "chatgate_logins_total", **admin, outcome="failed") >= 1

    values = await settled(server, counted, headers=right)
    assert value(values, "chatgate_logins_total", **admin, outcome="failed") == 1
    assert value(values, "chatgate_logins_total", **admin, outcome="succeeded") >= 2
    async with logged_in(server, "alice@localhost", "wonderland"):
        values = await settled(
            server,
            lambda v: value(v, "chatgate_sessions", transport="tcp") == 1,
            headers=right,
        )
        assert value(values, "chatgate_sessions", transport="tcp") == 1
