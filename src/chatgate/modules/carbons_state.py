"""Which sessions enabled XEP-0280 carbons: the `CarbonsState` protocol and its
in-process implementation.

They live apart from the module (`chatgate.modules.carbons`) so that the cluster's
implementation (`chatgate.cluster.carbons`), which keeps a `LocalCarbonsState` for
its own node's sessions, imports only this small file: the module chooses the
cluster implementation at setup, and importing the module back would close an
import cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection
from typing import Protocol

from chatgate.xmpp.session import C2SSession


class CarbonsState(Protocol):
    """Which sessions enabled carbons, by full JID.

    `LocalCarbonsState` knows this process's sessions; in a cluster
    `chatgate.cluster.carbons.ClusterCarbonsState` also knows every other node's
    (replicated to each node's memory, so routing never waits on Redis).  The
    copies go through the router, which forwards to other nodes' sessions."""

    def enable(self, session: C2SSession) -> None: ...

    def disable(self, session: C2SSession) -> None: ...

    def enabled(self, session: C2SSession) -> bool: ...

    def of(self, bare: str) -> Collection[str]:
        """The full JIDs of account `bare` with carbons on, on any node (empty: none)."""
        ...

    def __bool__(self) -> bool:
        """Whether any session has carbons on (False: the stage does nothing)."""
        ...

    def settled(self) -> Awaitable[None] | None:
        """What to await before telling the client its change is made (None: it is):
        in a cluster, until the other nodes were sent it, so a message routed there
        just after the answer is copied as the client expects."""
        ...


class LocalCarbonsState:
    """This process's sessions, per account; bounded by the sessions themselves."""

    def __init__(self) -> None:
        self._accounts: dict[str, dict[str, C2SSession]] = {}

    def enable(self, session: C2SSession) -> None:
        self._accounts.setdefault(session.bare, {})[session.resource] = session

    def disable(self, session: C2SSession) -> None:
        sessions = self._accounts.get(session.bare)
        if sessions is not None and sessions.get(session.resource) is session:
            del sessions[session.resource]
            if not sessions:
                del self._accounts[session.bare]

    def enabled(self, session: C2SSession) -> bool:
        return self._accounts.get(session.bare, {}).get(session.resource) is session

    def of(self, bare: str) -> Collection[str]:
        sessions = self._accounts.get(bare)
        return [s.full for s in sessions.values()] if sessions else ()

    def resources(self, bare: str) -> list[str]:
        """The resources of `bare` with carbons on in this process."""
        return list(self._accounts.get(bare, ()))

    def accounts(self) -> list[str]:
        """The accounts with a session with carbons on in this process."""
        return list(self._accounts)

    def __bool__(self) -> bool:
        return bool(self._accounts)

    def settled(self) -> None:
        return None
