"""A named registry per extension point, filled explicitly; third parties via entry points.

Nothing registers itself on import: built-ins are listed by one function per
extension point (e.g. `sasl.registry.builtin_mechanisms()`), and packages add
theirs through an entry-point group such as `chatgate.sasl_mechanisms`.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from chatgate.vocabulary.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps wire or config names (e.g. ``"SCRAM-SHA-256"``, ``"internal"``) to factories."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item

    def load_entry_points(self, group: str) -> None:
        """Add every entry point of `group` not already registered (built-ins win)."""
        for ep in entry_points(group=group):
            if ep.name not in self._items:
                try:
                    self._items[ep.name] = ep.load()
                except Exception as exc:
                    # An installed plugin that cannot even be imported is an operator's
                    # problem to fix: say which package, not a traceback.
                    dist = f" (package {ep.dist.name})" if ep.dist is not None else ""
                    raise ConfigError(
                        f"the {self.kind} plugin {ep.name!r} = {ep.value!r}{dist} in entry"
                        f" point group {group} cannot be loaded: {type(exc).__name__}: {exc}"
                    ) from exc

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> list[str]:
        return list(self._items)
