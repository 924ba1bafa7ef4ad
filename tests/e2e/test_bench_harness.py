"""The benchmark harness itself, run for real against chatgate in its tiny mode.

`python -m bench.run --tiny --servers chatgate` starts `chatgate serve` pinned to one core,
creates accounts with `chatgate user import`, provisions a small fan-out roster over XMPP, runs
every scenario once with the harness's own load generator on the other core, and writes its
JSON and Markdown report. This test checks that every scenario produced its figures; it asserts
no timing, which depends on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--tiny",
            "--servers",
            "chatgate",
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
