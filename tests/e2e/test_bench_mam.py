"""`python -m bench.run --tiny --scenarios mam --servers chatgate`: the bench's message
archive scenario end to end (issue 15).

A chatgate of the scenario's own, with `[modules.mam] enabled = true`, gets its
archive filled through the server (user 0 sends user 1 its 500 messages) and is then
started afresh for the measurement: pages of 50 newest-backwards and after random ids,
every page checked against the archive's ids by the generator.  This test checks that
the archive really holds what was sent, that every figure is there and consistent,
that the report carries the issue's target, and that the other scenarios' configuration
keeps the archive off.  It asserts no timing, which depends on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from bench import accounts
from bench.certs import ensure_certificate
from bench.cluster import config_text
from bench.mam import mam_config
from bench.peers import PeerSetup
from bench.plan import MAM_FIGURES, PLANS

pytestmark = [pytest.mark.e2e, pytest.mark.bench, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_the_scenario_config_turns_the_archive_on_and_changes_nothing_else(
    tmp_path: Path,
) -> None:
    setup = PeerSetup(tmp_path, 10, 5222, ensure_certificate(), 0)
    on = tomllib.loads(mam_config(setup, tmp_path / "var", 5299))
    off = tomllib.loads(config_text(setup, tmp_path / "var", 5299, None))
    assert off["modules"]["mam"] == {"enabled": False}
    assert on["modules"]["mam"] == {"enabled": True}
    on["modules"]["mam"] = off["modules"]["mam"]
    assert on == off
    assert on["server"]["domain"] == accounts.DOMAIN


@pytest.mark.timeout(600)
def test_mam_scenario_fills_the_archive_and_measures_pages(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--tiny", "--servers", "chatgate",
         "--scenarios", "mam", "--no-docs", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"bench.run failed:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    [results] = list(tmp_path.glob("*-tiny/results.json"))
    data = json.loads(results.read_text())
    [record] = [r for r in data["runs"] if r["scenario"] == "mam"]
    assert "error" not in record, record.get("error")
    plan = PLANS["tiny"]
    result = record["result"]
    # Every message sent through the server is in the archive, counted by the server.
    fill = result["provisioning"]
    assert fill["messages"] == fill["archived"] == plan.mam_messages == result["messages"]
    assert result["page"] == 50
    figures = {key: f["value"] for key, f in record["figures"].items()}
    every = []
    for kind in MAM_FIGURES:
        measured = result["figures"][kind]
        assert measured["queries"] >= plan.mam_queries
        assert measured["latency"]["samples"] == measured["queries"]
        every.append(measured["queries"])
        assert figures[f"mam_{kind}_queries_per_s"] > 0
        assert 0 < figures[f"mam_{kind}_p50_ms"] <= figures[f"mam_{kind}_p99_ms"]
        assert figures[f"mam_{kind}_p99_ms"] <= figures[f"mam_{kind}_max_ms"]
        # The server worked on every page: some of its CPU, never more than the wall time.
        assert (
            0
            < figures[f"mam_{kind}_cpu_ms"]
            <= (1000 * measured["window"]["seconds"] / measured["queries"])
        )
        assert record["figures"][f"mam_{kind}_queries_per_s"]["window"]["server_cpu_pct"] >= 0
    assert result["latency"]["samples"] == sum(every)
    assert figures["mam_page_p99_ms"] == result["latency"]["p99_ms"] > 0
    # Each page less the time the processes waited for a core is never more than the page.
    less = result["latency_less_core_waits"]
    assert less["samples"] == result["latency"]["samples"]
    assert 0 < figures["mam_page_p99_less_waits_ms"] == less["p99_ms"] <= figures["mam_page_p99_ms"]
    for kind in MAM_FIGURES:
        window = result["figures"][kind]["window"]
        assert window["server_wait_pct"] >= 0 and window["generator_wait_pct"] >= 0
        assert window["bound"]
    report = (results.parent / "report.md").read_text()
    assert "MAM page of 50 p99 < 20 ms over 100,000 messages" in report
    assert "measured with pages of 50 over 500 messages" in report
    # The other scenarios still run chatgate with the archive off (the same work as Prosody).
    config = tomllib.loads(data["meta"]["peers"]["chatgate"]["config"])
    assert config["modules"]["mam"] == {"enabled": False}
