"""Hook events of the session lifecycle (facts in the past tense)."""

from __future__ import annotations

from dataclasses import dataclass

from chatgate.xmpp.session import C2SSession


@dataclass(frozen=True, slots=True)
class SessionBound:
    """A resource was bound (RFC 6120 §7); presence is not yet available."""

    session: C2SSession


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """A bound session ended, cleanly or not; its presence is not yet withdrawn."""

    session: C2SSession


@dataclass(frozen=True, slots=True)
class BecameAvailable:
    """A session sent its initial available presence (RFC 6121 §4.2)."""

    session: C2SSession


@dataclass(frozen=True, slots=True)
class BecameUnavailable:
    """A session sent broadcast unavailable presence and stays connected (RFC 6121
    §4.5.1): what it joined by directed presence it has left (XEP-0045 rooms)."""

    session: C2SSession


@dataclass(frozen=True, slots=True)
class SessionHibernated:
    """A stream-managed session's connection dropped and it waits to be resumed
    (XEP-0198 §5): still bound, but nothing written to it reaches a device now."""

    session: C2SSession


@dataclass(frozen=True, slots=True)
class SessionResumed:
    """A hibernated session was resumed on a new connection."""

    session: C2SSession


@dataclass(frozen=True, slots=True)
class RemoteSessionLost:
    """A session on another cluster node that died (`cluster/`): if it was
    `available`, this node's contacts of `bare` must see `full` unavailable (RFC
    6121 §4.5.2); an anonymous identity may have ended with it."""

    full: str
    bare: str
    available: bool


@dataclass(frozen=True, slots=True)
class PresenceMissed:
    """While Redis was unreachable, a broadcast of `sender`'s availability (a full
    JID on this node) to `recipient` (an available session on another node) was
    refused.  Told once the cluster has resynchronised: the presence module sends
    `recipient` what `sender` shows now, if it may still see it (RFC 6121 §4.4.2
    and §4.5.2, XEP-0191), so a contact online through the outage does not keep
    what it saw before it."""

    sender: str
    recipient: str


@dataclass(frozen=True, slots=True)
class AccountRemoving:
    """An account is about to be deleted (in-band ``<remove/>``, the end of an
    anonymous identity): handlers withdraw what others hold of it (presence
    subscriptions, pending requests) while it still exists.  Run with `notify`:
    the deletion goes ahead whatever a handler does."""

    username: str
    domain: str
