"""Which node holds which component: the state a cluster must share.

A component connects to one node.  The claim is what keeps one connection per
component domain (a second one is refused with `conflict`, as Prosody refuses it),
and what tells another node where to forward the component's stanzas.

`LocalComponentLocator` is this process's answer (one process);
`cluster.RedisComponentLocator` the cluster's: one key per component domain holding
the node's name, set only when free, its expiry renewed with the heartbeat interval,
released with a compare-and-delete.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol


class ComponentLocator(Protocol):
    """Claims of component domains by nodes."""

    def claim(self, domain: str, node: str) -> bool | Awaitable[bool]:
        """Claim `domain` for `node`; False when another connection holds it."""
        ...

    def release(self, domain: str, node: str) -> Awaitable[None] | None:
        """Give `domain` up, if `node` holds it."""
        ...

    def holder(self, domain: str) -> str | Awaitable[str | None] | None:
        """The node holding `domain` (None: no component connected)."""
        ...


class LocalComponentLocator:
    """Claims kept in this process."""

    __slots__ = ("_holders",)

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}

    def claim(self, domain: str, node: str) -> bool:
        if domain in self._holders:
            return False
        self._holders[domain] = node
        return True

    def release(self, domain: str, node: str) -> None:
        if self._holders.get(domain) == node:
            del self._holders[domain]

    def holder(self, domain: str) -> str | None:
        return self._holders.get(domain)
