"""The bench's cluster scenario without a server: how pairs are placed by worker, which
figures and ratios a result yields, what bounded a window, and how the bench finds
the workers' listening sockets (real sockets of this process)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from bench import cluster
from bench.loadgen.cluster import _bound, _place
from bench.plan import CLUSTER_FIGURES, CLUSTER_RATIOS, PLANS, SCENARIOS


class _Conn:
    def __init__(self, name: str) -> None:
        self.name = name


def _nodes(**counts: int) -> dict[str, list[Any]]:
    return {node: [_Conn(f"{node}.{i}") for i in range(n)] for node, n in counts.items()}


def _node_of(conn: Any) -> str:
    return str(conn.name.split(".")[0])


def test_same_worker_pairs_are_spread_evenly_over_the_workers() -> None:
    chosen = _place(_nodes(a=10, b=10), 6, "same")
    pairs = [(chosen[i], chosen[i + 1]) for i in range(0, len(chosen), 2)]
    assert len(pairs) == 6
    assert all(_node_of(s) == _node_of(r) for s, r in pairs)
    assert sorted(_node_of(s) for s, _ in pairs) == ["a", "a", "a", "b", "b", "b"]
    assert len({id(c) for c in chosen}) == 12  # no session used twice


def test_cross_worker_pairs_go_both_ways() -> None:
    chosen = _place(_nodes(a=5, b=5), 4, "cross")
    pairs = [(_node_of(chosen[i]), _node_of(chosen[i + 1])) for i in range(0, len(chosen), 2)]
    assert pairs == [("a", "b"), ("b", "a"), ("a", "b"), ("b", "a")]


def test_placement_stops_short_when_a_worker_has_too_few_sessions() -> None:
    assert len(_place(_nodes(a=3, b=1), 3, "cross")) == 2  # one pair only: b ran out
    assert _place(_nodes(a=8), 2, "cross") == []  # one worker: nothing crosses


def _result(rate: float, *, login: bool = False) -> dict[str, Any]:
    window = {"seconds": 1.0, "server_cpu_pct": 50.0, "generator_cpu_pct": 20.0}
    if login:
        return {"logins_per_s": rate, "window": window}
    return {"messages_per_s": rate, "latency": {"p50_ms": 2.0}, "window": window}


def test_figures_and_ratios_of_a_cluster_result() -> None:
    result = {
        "off": {"login": _result(1000, login=True), "any": _result(100_000)},
        "w1": {"login": _result(950, login=True), "same": _result(92_000)},
        "w2": {"login": _result(1500, login=True), "same": _result(150_000)},
    }
    result["w2"]["cross"] = _result(120_000)
    figures = SCENARIOS["cluster"].figures(PLANS["quick"], result)
    assert {key for *_, key, _ in CLUSTER_FIGURES} <= set(figures)
    assert figures["cluster_w1_over_off_messages"][0] == pytest.approx(0.92)
    assert figures["cluster_w1_over_off_logins"][0] == pytest.approx(0.95)
    assert figures["cluster_w2_cross_over_same"][0] == pytest.approx(0.8)
    assert set(CLUSTER_RATIOS) <= set(figures)
    metrics = {m.key for m in SCENARIOS["cluster"].metrics(PLANS["quick"])}
    assert set(figures) <= metrics  # every figure has its row in the report


def test_messages_per_cpu_second_count_the_workers_and_redis() -> None:
    """Across-worker pairs carry less per second than same-worker ones when the
    generator shares a worker's core; per CPU-second (server and Redis) says what a
    worker carries regardless."""
    same = _result(300_000)
    same["window"] = {"server_cpu_pct": 180.0, "redis_cpu_pct": 0.0, "generator_cpu_pct": 15.0}
    cross = _result(240_000)
    cross["window"] = {"server_cpu_pct": 165.0, "redis_cpu_pct": 5.0, "generator_cpu_pct": 12.0}
    result = {
        "off": {"login": _result(1000, login=True), "any": _result(100_000)},
        "w1": {"login": _result(950, login=True), "same": _result(92_000)},
        "w2": {"login": _result(1500, login=True), "same": same, "cross": cross},
    }
    figures = SCENARIOS["cluster"].figures(PLANS["quick"], result)
    assert figures["cluster_w2_same_messages_per_cpu_s"][0] == round(300_000 / 1.8)
    assert figures["cluster_w2_cross_messages_per_cpu_s"][0] == round(240_000 / 1.7)
    assert figures["cluster_w2_cross_over_same_per_cpu"][0] == pytest.approx(
        (240_000 / 1.7) / (300_000 / 1.8), abs=1e-3
    )
    assert figures["cluster_w2_cross_over_same"][0] == pytest.approx(0.8)  # the target's, as is
    metrics = {m.key for m in SCENARIOS["cluster"].metrics(PLANS["quick"])}
    assert set(figures) <= metrics
    # A window with no CPU counted yields no per-CPU figure, not a division by zero.
    cross["window"] = {"server_cpu_pct": 0.0, "generator_cpu_pct": 0.0}
    figures = SCENARIOS["cluster"].figures(PLANS["quick"], result)
    assert "cluster_w2_cross_messages_per_cpu_s" not in figures
    assert "cluster_w2_cross_over_same_per_cpu" not in figures


def test_a_failed_set_up_fails_the_scenario_with_its_reason() -> None:
    result = {"off": {"login": _result(1000, login=True)}, "w2": {"error": "RuntimeError: boom"}}
    with pytest.raises(RuntimeError, match="w2: RuntimeError: boom"):
        SCENARIOS["cluster"].figures(PLANS["quick"], result)


def test_bound_names_the_saturated_part() -> None:
    machine = os.cpu_count() or 1
    quiet = {"generator_cpu_pct": 10.0, "redis_cpu_pct": 1.0, "other_cpu_pct": 1.0}
    assert _bound({**quiet, "server_cpu_pct": 95.0}, {"server": 95.0}, 1) == "server CPU"
    assert _bound({**quiet, "server_cpu_pct": 30.0}, {"w1": 15.0, "w2": 15.0}, 2) == (
        "neither saturated"
    )
    busy = {"generator_cpu_pct": 50.0, "redis_cpu_pct": 10.0, "other_cpu_pct": 10.0}
    full = _bound({**busy, "server_cpu_pct": 100.0 * machine}, {"w1": 100.0 * machine}, 2)
    assert full.startswith("machine CPU")


def test_the_bench_finds_which_process_listens_on_a_port() -> None:
    with socket.socket() as listener, socket.socket() as other:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        other.bind(("127.0.0.1", 0))  # bound, not listening
        port = listener.getsockname()[1]
        assert cluster.listening_pids(port, [os.getpid()]) == {os.getpid()}
        assert cluster.listening_pids(other.getsockname()[1], [os.getpid()]) == set()
    assert os.getpid() in cluster.children(os.getppid())
