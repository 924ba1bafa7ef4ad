"""XEP-0198 resumption across cluster nodes: the answers the two nodes exchange and
what a connection uses of the handover.

The conversation itself is `cluster/sm_handover.py`'s (`SessionHandover`), the
connection work on both sides `xmpp/sm_takeover.py`'s, and the connection
driver (`sm_driver.py`) starts it.  The handover calls the takeover's functions
on the old side; the takeover and the driver need only the answers and the few
calls below on the new side.  Both sides import this file, which imports neither,
so the handover, the takeover and the driver form no import cycle (the module
that chooses the cluster's handover, `modules/stream_management.py`, is the only
one importing `cluster/sm_handover.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from chatgate.peers import Peers
    from chatgate.xmpp.sm_tokens import TokenSigner


@dataclass(frozen=True, slots=True)
class Taken:
    """A's answer to step 1: the session's state, for B to rebuild it."""

    full: str
    sid: str
    inbound: int
    acked: int
    resume_seconds: int
    available: bool
    priority: int
    presence: str | None
    interested: bool
    directed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A's answer to step 1 when there is nothing to take: `moved` names the node
    to ask instead; `too_high` is (h, sent) for an 'h' past what was sent."""

    h: int | None = None
    moved: str | None = None
    too_high: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Handed:
    """A's answer to step 3."""

    #: what the client has not acknowledged, oldest first
    unacked: list[bytes]
    #: what A's modules carried (`xmpp/sm_events.py`)
    carry: dict[str, str]


class HandoverFailed(Exception):
    """Step 3 failed: A is gone or no longer holds the session."""


class Handover(Protocol):
    """What the connections of this node use of the cluster's handover
    (`chatgate.cluster.sm_handover.SessionHandover`, whose docstring has the steps):
    the driver to issue and place tokens, the takeover to ask the node holding a
    session for it."""

    @property
    def signer(self) -> TokenSigner | None:
        """Issues and reads this installation's tokens (None until the start)."""
        ...

    @property
    def peers(self) -> Peers: ...

    def locate(self, token: str, owner: str) -> str | None:
        """The node to ask for `owner`'s `token`, when it is not this one's."""
        ...

    async def take(self, node: str, token: str, owner: str, h: int | None) -> Taken | Refusal:
        """Step 1.  Raises `PeerUnreachable`/`PeerRefused` (A dead, Redis away)."""
        ...

    async def done(self, node: str, token: str) -> Handed:
        """Step 3.  Raises `HandoverFailed`, `PeerUnreachable` or `PeerRefused`."""
        ...

    def abort(self, node: str, token: str) -> None:
        """Step 4: give the session back to A's ending."""
        ...

    def resumed_here(self, token: str) -> None:
        """The session of `token` is this node's now."""
        ...
