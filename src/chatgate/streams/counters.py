"""How many decisions the stream authority made, by adapter, action and verdict:
what the metrics endpoint and an operator's dashboard read.

Keys are bounded by construction: adapters are the registered ones, actions and
verdict kinds are enums; free-text reasons are logged, never counted.  Behind
an interface, as the login gate's counters, so a shared store can sum them over
processes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Protocol

__all__ = ["DecisionCounters", "LocalDecisionCounters"]


class DecisionCounters(Protocol):
    def increment(self, adapter: str, action: str, verdict: str) -> None: ...

    def snapshot(self) -> Mapping[tuple[str, str, str], int]:
        """(adapter, action, verdict) -> decisions so far."""
        ...


class LocalDecisionCounters:
    """`DecisionCounters` in this process."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def increment(self, adapter: str, action: str, verdict: str) -> None:
        self._counts[(adapter, action, verdict)] += 1

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        return dict(self._counts)
