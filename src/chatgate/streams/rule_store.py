"""Rules added at run time (`stores.RuleStore`) on the database (``stream_rules``).

``chatgate streams rules add`` (and later the REST API) stores a rule here; the
running servers' `RuleBook` reloads when the change signal fires, which this
store raises after every change it makes.  The caller validates a rule
(`policy.Rule.parse`) before adding it: this store keeps text, and refuses only
what cannot be stored (not a string, empty, longer than `MAX_RULE_LENGTH`,
unprintable), with `ValueError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from chatgate.streams.stores import ChangeSignal

if TYPE_CHECKING:
    from chatgate.storage.repositories.streams import StreamRuleRepository

__all__ = ["MAX_RULE_LENGTH", "DatabaseRuleStore", "LocalRuleStore"]

#: Longest rule text stored (the column's width).
MAX_RULE_LENGTH: Final = 1024


def _check(rule: str) -> None:
    if not isinstance(rule, str) or not 0 < len(rule) <= MAX_RULE_LENGTH or not rule.isprintable():
        raise ValueError(f"a stored rule is 1 to {MAX_RULE_LENGTH} printable characters")


class DatabaseRuleStore:
    """`RuleStore` on the database, shared by every process on it."""

    def __init__(self, repository: StreamRuleRepository, signal: ChangeSignal) -> None:
        self._repository = repository
        self._signal = signal

    async def rules(self) -> list[str]:
        return await self._repository.rules()

    async def add(self, rule: str) -> bool:
        _check(rule)
        added = await self._repository.add(rule)
        if added:
            self._signal.raise_()
        return added

    async def remove(self, rule: str) -> bool:
        if not isinstance(rule, str):
            return False
        removed = await self._repository.remove(rule)
        if removed:
            self._signal.raise_()
        return removed


class LocalRuleStore:
    """`RuleStore` in this process (tests, a server without storage)."""

    def __init__(self, signal: ChangeSignal | None = None) -> None:
        self._rules: dict[str, None] = {}  # insertion-ordered set
        self._signal = signal

    async def rules(self) -> list[str]:
        return list(self._rules)

    async def add(self, rule: str) -> bool:
        _check(rule)
        if rule in self._rules:
            return False
        self._rules[rule] = None
        if self._signal is not None:
            self._signal.raise_()
        return True

    async def remove(self, rule: str) -> bool:
        if rule not in self._rules:
            return False
        del self._rules[rule]
        if self._signal is not None:
            self._signal.raise_()
        return True
