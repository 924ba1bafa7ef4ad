"""The benchmark harness itself, run for real against chatgate in its tiny mode.

`python -m bench.run --tiny --servers chatgate` starts `chatgate serve` pinned to one core,
creates accounts with `chatgate user import`, provisions a small fan-out roster over XMPP, runs
every scenario once with the harness's own load generator on the other core, and writes its
JSON and Markdown report. This test checks that every scenario produced its figures; it asserts
no timing, which depends on the machine.

The BOSH and WebSocket scenarios (issue 11) run against Prosody, whose mod_bosh and
mod_websocket the harness configures, until chatgate's HTTP listener exists; their chatgate run
is skipped until chatgate's configuration has an `[http]` table. A web endpoint that does not
answer must fail a scenario quickly and say why.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bench.loadgen import scenarios
from bench.loadgen.bosh import BoshClient
from bench.loadgen.scram import ScramCache
from bench.loadgen.websocket import WsClient
from bench.loadgen.xmpp import LoginOptions, XmppError
from bench.peers.chatgate import http_supported
from bench.peers.prosody import PROSODY

pytestmark = [pytest.mark.e2e, pytest.mark.bench, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

# Figures that must be positive for every scenario of the default set.
EXPECTED = {
    "login": ["logins_per_s", "login_p50_ms", "login_p99_ms"],
    "login_tls": ["logins_per_s_tls", "login_p50_ms_tls"],
    "throughput_tls": ["messages_per_s_tls", "loaded_p50_ms_tls"],
    "latency": ["latency_p50_ms", "latency_p99_ms"],
    "idle": ["idle_kib_200"],
    "fanout": ["fanout_deliveries_per_s"],
    "soak": ["messages_per_s", "soak_after_messages_per_s", "soak_after_over_fresh"],
}
TCP_SCENARIOS = ["login", "login_tls", "throughput", "throughput_tls", "latency", "idle"]
TCP_SCENARIOS += ["fanout", "soak"]
WEB_EXPECTED = {
    "login_bosh": ["logins_per_s_bosh", "login_p50_ms_bosh", "login_p99_ms_bosh"],
    "login_ws": ["logins_per_s_ws", "login_p50_ms_ws", "login_p99_ms_ws"],
    "throughput_bosh": ["messages_per_s_bosh", "loaded_p50_ms_bosh"],
    "throughput_ws": ["messages_per_s_ws", "loaded_p50_ms_ws"],
}


def _tiny(out: Path, server: str, names: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--tiny",
            "--servers",
            server,
            "--scenarios",
            ",".join(names),
            "--no-docs",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"bench.run failed:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    [results] = list(out.glob("*-tiny/results.json"))
    data = json.loads(results.read_text())
    data["_stdout"] = proc.stdout
    data["_dir"] = results.parent
    return data


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _tiny(tmp_path_factory.mktemp("bench"), "chatgate", TCP_SCENARIOS)


@pytest.mark.timeout(900)
def test_every_scenario_produces_positive_figures(tiny_run: dict) -> None:
    runs = {r["scenario"]: r for r in tiny_run["runs"] if r["server"] == "chatgate"}
    assert set(runs) == set(EXPECTED), f"scenarios run: {sorted(runs)}"
    for scenario, keys in EXPECTED.items():
        record = runs[scenario]
        assert "error" not in record, f"{scenario}: {record.get('error')}"
        for key in keys:
            value = record["figures"][key]["value"]
            assert value > 0, f"{scenario}: {key} = {value}"
        assert record["result"]["errors"] == 0, f"{scenario}: {record['result']}"


@pytest.mark.timeout(900)
def test_measurements_name_what_bounded_them(tiny_run: dict) -> None:
    for record in tiny_run["runs"]:
        for figure in record["figures"].values():
            window = figure["window"]
            assert window["seconds"] > 0
            assert window["server_cpu_pct"] > 0, "server CPU was not sampled from /proc"
            assert window["generator_cpu_pct"] > 0, "generator CPU was not sampled"
            assert window["server_rss_kib"] > 0


@pytest.mark.timeout(900)
def test_messages_are_counted_once_and_never_invented(tiny_run: dict) -> None:
    soak = next(r for r in tiny_run["runs"] if r["scenario"] == "soak")
    for phase in ("fresh", "after"):
        p = soak["result"]["phases"][phase]
        assert 0 < p["received_total"] <= p["sent_total"]


@pytest.mark.timeout(900)
def test_report_prints_the_table_and_records_the_config(tiny_run: dict) -> None:
    assert "| figure | chatgate |" in tiny_run["_stdout"]
    assert "Targets for chatgate" in tiny_run["_stdout"]
    assert (tiny_run["_dir"] / "report.md").read_text().startswith("### tiny run")
    peer = tiny_run["meta"]["peers"]["chatgate"]
    assert "[[listeners]]" in peer["config"]
    assert tiny_run["meta"]["provisioning"]["chatgate"]["seconds"] >= 0


def _check_web_run(data: dict[str, Any], server: str) -> None:
    runs = {r["scenario"]: r for r in data["runs"] if r["server"] == server}
    assert set(runs) == set(WEB_EXPECTED), f"scenarios run: {sorted(runs)}"
    for scenario, keys in WEB_EXPECTED.items():
        record = runs[scenario]
        assert "error" not in record, f"{scenario}: {record.get('error')}"
        for key in keys:
            figure = record["figures"][key]
            assert figure["value"] > 0, f"{scenario}: {key} = {figure['value']}"
            assert figure["window"]["generator_cpu_pct"] > 0
        assert record["result"]["errors"] == 0, f"{scenario}: {record['result']}"
    for scenario in ("throughput_bosh", "throughput_ws"):
        result = runs[scenario]["result"]
        assert 0 < result["received_total"] <= result["sent_total"]
    # BOSH requests travel over kept-alive connections, as browsers send them
    for scenario in ("login_bosh", "throughput_bosh"):
        result = runs[scenario]["result"]
        assert 0 < result["http_connections"] < result["http_requests"] / 4, result
    assert "logins/s, BOSH" in data["_stdout"] and "messages/s, WebSocket" in data["_stdout"]


@pytest.mark.timeout(300)
@pytest.mark.skipif(not Path(PROSODY).exists(), reason="Prosody not installed")
def test_web_scenarios_against_prosody(tmp_path: Path) -> None:
    """The BOSH and WebSocket clients log in and exchange messages with a real server."""
    data = _tiny(tmp_path, "prosody", list(WEB_EXPECTED))
    _check_web_run(data, "prosody")
    assert "consider_bosh_secure = true" in data["meta"]["peers"]["prosody"]["config"]


@pytest.mark.timeout(900)
@pytest.mark.skipif(
    not http_supported(), reason="chatgate has no [http] listener yet (issue 11, lead's work)"
)
def test_web_scenarios_against_chatgate(tmp_path: Path) -> None:
    data = _tiny(tmp_path, "chatgate", list(WEB_EXPECTED))
    _check_web_run(data, "chatgate")
    assert "[http]" in data["meta"]["peers"]["chatgate"]["config"]


async def _silent_server() -> tuple[asyncio.Server, int]:
    """Accepts connections and never answers: a web endpoint that hangs."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("client_class", [BoshClient, WsClient])
def test_web_endpoint_that_does_not_answer_fails_fast_and_says_why(
    client_class: type[BoshClient] | type[WsClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scenarios, "PROBE_TIMEOUT", 1.0)

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        cache = ScramCache()
        server, silent = await _silent_server()
        refused = server.sockets[0].getsockname()[1]
        reasons = []
        try:
            # a port where nothing listens (taken from a closed server), then a silent one
            probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
            refused = probe.sockets[0].getsockname()[1]
            probe.close()
            await probe.wait_closed()
            for port in (refused, silent):
                client = client_class(loop, LoginOptions(port=port), cache, "/xmpp")
                runner = scenarios.Runner(loop, client, 0, users=10, fanout_block=1)
                t0 = time.monotonic()
                with pytest.raises(XmppError) as info:
                    await runner.probe(client.url)
                assert time.monotonic() - t0 < 5.0
                await client.shutdown()
                reasons.append(str(info.value))
        finally:
            server.close()
        return reasons

    refused, silent = asyncio.run(main())
    assert "did not complete a login" in refused and "refused" in refused.lower()
    assert "did not complete a login" in silent and "no answer in 1 s" in silent
