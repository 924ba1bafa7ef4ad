"""Plain records that cross the storage boundary (no ORM objects leak out of repositories)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Subscription(enum.Enum):
    """RFC 6121 §2.1.2.5: the `subscription` attribute of a roster item."""

    NONE = "none"
    TO = "to"
    FROM = "from"
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class RosterItem:
    """One contact in a user's roster (RFC 6121 §2.1.2)."""

    jid: str  # the contact's bare JID
    name: str | None = None
    subscription: Subscription = Subscription.NONE
    ask: bool = False  # pending out: we asked to see the contact's presence
    approved: bool = False  # pre-approved inbound subscription (RFC 6121 §3.4)
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OfflineMessage:
    """A message kept for a user who had no available resource (XEP-0160)."""

    id: int
    stanza: str  # serialized <message/>, namespace jabber:client
    stamp: datetime  # UTC time the server received it


@dataclass(frozen=True, slots=True)
class AccountSummary:
    username: str
    domain: str
    created: datetime
