"""`python -m bench.run --tiny --scenarios cluster --servers chatgate`: the bench's
cluster scenario end to end (chatgate with the cluster off, then `serve --workers 1`
and `--workers 2` with a bench-owned redis-server): every figure is there and
positive, the ratios are the figures' quotients, the same/cross placements really
put the pairs where they say, and the report lists the issue's two targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bench.plan import CLUSTER_FIGURES, CLUSTER_RATIOS

pytestmark = [pytest.mark.e2e, pytest.mark.bench, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_cluster_scenario_measures_every_set_up(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--tiny", "--servers", "chatgate",
         "--scenarios", "cluster", "--no-docs", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"bench.run failed:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    [results] = list(tmp_path.glob("*-tiny/results.json"))
    data = json.loads(results.read_text())
    [record] = [r for r in data["runs"] if r["scenario"] == "cluster"]
    assert "error" not in record, record.get("error")
    figures = {key: f["value"] for key, f in record["figures"].items()}
    for *_, key, _label in CLUSTER_FIGURES:
        assert figures[key] > 0, key
    for key, (top, bottom, _label) in CLUSTER_RATIOS.items():
        assert figures[key] == pytest.approx(figures[top] / figures[bottom], rel=1e-2)
    w2 = record["result"]["w2"]
    assert w2["same"]["placement"] == "same" and w2["cross"]["placement"] == "cross"
    assert len(w2["cross"]["sessions_per_node"]) == 2  # both workers held sessions
    assert w2["cross"]["received_total"] <= w2["cross"]["sent_total"]
    for name in ("w1", "w2"):
        window = record["result"][name]["login"]["window"]
        assert "redis_cpu_pct" in window and window["bound"]
    report = (results.parent / "report.md").read_text()
    assert "across ÷ same worker ≥ 0.8" in report
    assert "cluster on ÷ off ≥ 0.9" in report
