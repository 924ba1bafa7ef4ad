"""The rules in force: the configuration file's and the stored ones together.

Rules come from two places: ``[streams] rules`` in ``chatgate.toml`` (changed by
editing the file and restarting) and the `RuleStore` (``chatgate streams rules
add``, later the REST API, effective at once).  `RuleBook.current` returns one
indexed `RuleSet` of both, rebuilt only when the change signal says the stored
rules changed, so a decision costs no database read.

A stored rule that no longer parses (written by a newer version, or by hand) is
skipped with a warning: one bad row must not take every stream down, and the
rules only grant, so skipping one never widens access.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from chatgate.streams.policy import InvalidPattern, Rule, RuleSet
from chatgate.streams.stores import ChangeSignal, RuleStore

__all__ = ["RuleBook"]

log = logging.getLogger(__name__)


class RuleBook:
    """`configured` rules (already validated with the configuration) plus the
    `store`'s, reloaded when `signal` fires.  Without a store, the configured
    rules alone."""

    def __init__(
        self,
        configured: Iterable[str],
        store: RuleStore | None = None,
        signal: ChangeSignal | None = None,
    ) -> None:
        self._configured = [Rule.parse(text) for text in configured]
        self._store = store
        self._signal = signal
        self._rules: RuleSet | None = None if store is not None else RuleSet(self._configured)

    @property
    def configured(self) -> list[Rule]:
        return list(self._configured)

    async def current(self) -> RuleSet:
        """The rules in force now."""
        signal = self._signal
        if signal is not None and signal.changed():
            self._rules = None
        rules = self._rules
        if rules is None:
            rules = self._rules = await self._load()
        return rules

    async def _load(self) -> RuleSet:
        stored: list[Rule] = []
        if self._store is not None:
            for text in await self._store.rules():
                try:
                    stored.append(Rule.parse(text))
                except (InvalidPattern, ValueError) as exc:
                    log.warning("stream rules: stored rule %r skipped: %s", text, exc)
        return RuleSet([*self._configured, *stored])
