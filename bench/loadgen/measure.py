"""Measurement windows and percentiles, as seen from the generator process.

A window records wall time, the generator's own CPU (getrusage), the server's CPU (utime + stime
from /proc/PID/stat, all threads) and the rest of the machine's busy time (/proc/stat) between
`start` and `stop`, so every figure carries what bounded it and whether something else was
running. Never touches the network.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from typing import Any

from bench import procs


def _own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


@dataclass
class Window:
    server_pid: int
    t0: float = 0.0
    gen0: float = 0.0
    srv0: float = 0.0
    all0: float = 0.0

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.gen0 = _own_cpu()
        self.srv0 = procs.cpu_seconds(self.server_pid)
        self.all0 = procs.machine_busy_seconds()

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        gen = _own_cpu() - self.gen0
        srv = procs.cpu_seconds(self.server_pid) - self.srv0
        other = procs.machine_busy_seconds() - self.all0 - gen - srv
        return {
            "seconds": round(wall, 3),
            "server_cpu_pct": round(100 * srv / wall, 1),
            "generator_cpu_pct": round(100 * gen / wall, 1),
            "server_rss_kib": procs.rss_kib(self.server_pid),
            # Everything else on the machine (other processes, the kernel's softirqs): a run
            # with much of it was disturbed.
            "other_cpu_pct": round(max(0.0, 100 * other / wall), 1),
        }


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def latency_summary(samples_ns: list[int]) -> dict[str, float]:
    """p50/p99/max in milliseconds, and the sample count."""
    s = sorted(samples_ns)
    return {
        "p50_ms": round(percentile(s, 50) / 1e6, 4),
        "p99_ms": round(percentile(s, 99) / 1e6, 4),
        "max_ms": round((s[-1] if s else 0) / 1e6, 4),
        "samples": len(s),
    }
