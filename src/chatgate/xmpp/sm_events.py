"""Events of a XEP-0198 resumption that moves a session between cluster nodes
(`cluster/sm_handover.py`, `xmpp/sm_takeover.py`), for modules that keep state per
session in a node's memory (carbons enabled, PEP interest, pinned caches...).

On one node a resumed session is the same object, so its modules' state simply
stays.  Across nodes the session object is rebuilt on the new node, and the old
node lets it go *without* `SessionClosed` (which would broadcast unavailable
presence, leave rooms, ...).  So, in order:

1. `SessionMovingOut` on the old node, while the session is still bound there:
   each module that has state to keep puts it in `carry`, under its own name
   (a short string; everything carried is bounded by `MAX_CARRY` bytes, past
   which nothing is carried and a warning is logged);
2. `SessionMovedOut` on the old node, once the session is released there: forget
   the session's state without the side effects of `SessionClosed`;
3. `SessionMovedIn` on the new node, before `<resumed/>` is sent: restore the
   state from `carry` (then `SessionBound` and `SessionResumed` follow, as for
   any session bound and resumed here).

Before all three, `SessionArriving` on the new node, before the session is
claimed there: what the account's sessions on this node read from memory is
read in now (its roster), so a change another node makes from the moment the
session is reachable here reaches it; and `SessionArrived` once the claim is
decided (with the session, or None when it failed): what arrived for the
session meanwhile is its now.

Handlers of 1 run as `notify` handlers; `carry` is the one field meant to be
written (a collection, never a veto).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chatgate.xmpp.session import C2SSession

#: bytes of carried state (names and values) a moving session may take along
MAX_CARRY = 16_384


@dataclass(frozen=True, slots=True)
class SessionArriving:
    """A session of `username`@`domain` is about to move here from `node`."""

    username: str
    domain: str
    node: str


@dataclass(frozen=True, slots=True)
class SessionArrived:
    """The claim `SessionArriving` announced is decided: `session` is bound here,
    or None (the take-over failed)."""

    username: str
    domain: str
    session: C2SSession | None


@dataclass(frozen=True, slots=True)
class SessionMovingOut:
    """The session is about to move to `node`: add its state to `carry`."""

    session: C2SSession
    node: str
    carry: dict[str, str]


@dataclass(frozen=True, slots=True)
class SessionMovedOut:
    """The session moved to `node`: forget it here, with no side effect."""

    session: C2SSession
    node: str


@dataclass(frozen=True, slots=True)
class SessionMovedIn:
    """The session came from `node`, with what its modules there carried."""

    session: C2SSession
    node: str
    carry: Mapping[str, str]


def carried_size(carry: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in carry.items())
