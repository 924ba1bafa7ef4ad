"""The session directory: which sessions are bound, and whether a new one may be.

Every bound client session is claimed here and released here; nothing else keeps
a table of sessions.  The directory decides resource conflicts (RFC 6120 §7.7.2.2)
and `[session] max_resources` when a session is claimed, and it records each
session's availability and priority (RFC 6121 §4.7.2.3), which the router's
delivery rules read (RFC 6121 §8.5).  Modules never read the table: they deliver
through the router (`xmpp/router.py`) and ask the directory the few questions
about sessions they have (is this session still bound, has the account any).

`SessionDirectory` is the interface; `LocalSessionDirectory` keeps this
process's sessions in one dict, as chatgate always has.  A shared implementation
(Redis, issue 14) keeps the same local table for the sessions of its own node:
delivery to a session here stays two dict look-ups and a write, with no await.
What needs the shared store may need I/O, so those methods may return an
awaitable instead of the answer, and callers await only then:

- `claim` (the conflict and the limit hold across nodes: an atomic update),
- `release` (the shared entry goes; the local one is gone when it returns),
- `bound_anywhere` (an anonymous identity exists while any node holds a session).

Availability changes (`mark_available`, `mark_unavailable`) return nothing: a
shared implementation publishes them in order in the background, and delivery
never waits for them.  What a shared implementation adds for delivery (the
resources on other nodes, forwarding a serialized stanza once per node) is
asked by the router when the local table does not hold the answer; the local
directory has no other node to ask.

It never writes stanzas to sessions except `close_sessions`' stream errors.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Protocol

from chatgate.config import ResourceConflict
from chatgate.vocabulary.errors import StanzaError, StanzaErrorCondition, StreamErrorCondition
from chatgate.xml.element import Element
from chatgate.xmpp.session import C2SSession

#: The bound session and the session of this process it replaced, if any (the
#: caller closes that one with <conflict/>; one on another node is the directory's
#: to close).  A plain tuple: this is on every login's path.
Claimed = tuple[C2SSession, C2SSession | None]
#: Builds the session for a resource (the directory may choose another resource).
SessionFactory = Callable[[str], C2SSession]


class ClaimRefused(StanzaError):
    """The directory refuses a new session: `conflict` when the resource is taken
    and the policy is "reject" (RFC 6120 §7.7.2.2), `resource-constraint` when the
    account has `max_resources` sessions already (§7.6.2.1).  The bind (or
    XEP-0078 login) is answered with this stanza error."""


class SessionDirectory(Protocol):
    """Where the sessions of every served account are (see the module docstring)."""

    @property
    def local(self) -> Mapping[str, Mapping[str, C2SSession]]:
        """This process's bound sessions, bare JID -> resource -> session; an account
        with none has no entry.  The same mapping for the directory's lifetime, read
        by the router on the hot path and changed only by the directory."""
        ...

    @property
    def table(self) -> Mapping[str, Mapping[str, C2SSession]]:
        """What the router delivers to: `local`, and in a cluster a stand-in for each
        session on another node (its writes are forwarded there).  The same mapping
        for the directory's lifetime."""
        ...

    def claim(
        self, session_for: SessionFactory, resource: str | None
    ) -> Claimed | Awaitable[Claimed]:
        """Bind a new session for the client's `resource` (None: the server chooses
        one), applying the resource-conflict policy and the limit on resources.
        Raises (or the awaitable raises) `ClaimRefused`."""
        ...

    def release(self, session: C2SSession) -> Awaitable[None] | None:
        """The session ended: it is gone from `local` when this returns (a later
        session on the same resource is left alone); an awaitable, when returned,
        finishes the release elsewhere."""
        ...

    def mark_available(self, session: C2SSession, priority: int, presence: Element) -> None:
        """The session sent available presence (RFC 6121 §4.2, §4.4): it receives
        messages by its `priority` (§8.5.2) and probes are answered with
        `presence` (its 'to' removed)."""
        ...

    def mark_unavailable(self, session: C2SSession) -> None:
        """The session sent unavailable presence or is ending (RFC 6121 §4.5)."""
        ...

    def mark_interested(self, session: C2SSession) -> None:
        """The session requested the roster: it gets roster pushes (RFC 6121 §2.1.6)."""
        ...

    def mark_hibernated(self, session: C2SSession, hibernated: bool) -> None:
        """The session's connection dropped and it waits to be resumed (XEP-0198
        §5), or it was resumed: while it waits, what is written to it reaches no
        device, so push wakes one (XEP-0357) whichever node the sender is on."""
        ...

    @property
    def hibernated_elsewhere(self) -> Collection[object]:
        """The stand-ins in `table` of sessions on other nodes that wait to be
        resumed (empty on one node)."""
        ...

    def is_bound(self, session: C2SSession) -> bool:
        """This very session (not a later one on its resource) is still bound."""
        ...

    def bound_here(self, bare: str) -> bool:
        """The account has a session in this process (for what this process caches
        per online account)."""
        ...

    def bound_anywhere(self, bare: str) -> bool | Awaitable[bool]:
        """The account has a session on any node."""
        ...

    def close_sessions(self, bare: str, condition: StreamErrorCondition, text: str) -> int:
        """End every session of the account with a stream error; returns how many
        this process closed."""
        ...


class LocalSessionDirectory:
    """The sessions of this process, in one dict: the whole truth for one node."""

    __slots__ = ("conflict", "local", "max_resources")

    def __init__(self, conflict: ResourceConflict, max_resources: int) -> None:
        #: `[session] resource_conflict`: what a bind of a resource already online does
        self.conflict = conflict
        #: `[session] max_resources`: sessions one account may have at once
        self.max_resources = max_resources
        self.local: dict[str, dict[str, C2SSession]] = {}

    def claim(self, session_for: SessionFactory, resource: str | None) -> Claimed:
        """Decided at once (see `SessionDirectory.claim`).

        For a resource already online, by `conflict`: "newest" replaces the old
        session (returned second, for the caller to close with <conflict/>, RFC 6120
        §7.7.2.2), "reject" refuses the new one with conflict, "randomize" gives it
        a server-chosen resource; a server-chosen resource that collides is always
        made unique.  Past `max_resources` the new session is refused with
        resource-constraint, unless it replaces one.
        """
        session = session_for(resource or _random_resource())
        bare = session.bare
        resources = self.local.get(bare)
        replaced = None
        if resources is not None:
            existing = resources.get(session.resource)
            if existing is not None:
                if self.conflict is ResourceConflict.REJECT_NEW:
                    raise ClaimRefused(StanzaErrorCondition.CONFLICT)
                if self.conflict is ResourceConflict.RANDOMIZE or resource is None:
                    session = session_for(f"{session.resource}-{_random_resource()[:8]}")
                else:
                    replaced = existing
                    del resources[existing.resource]
            if replaced is None and len(resources) >= self.max_resources:
                raise ClaimRefused(StanzaErrorCondition.RESOURCE_CONSTRAINT, "too many resources")
        else:
            resources = self.local[bare] = {}
        resources[session.resource] = session
        return session, replaced

    def release(self, session: C2SSession) -> None:
        resources = self.local.get(session.bare)
        if resources is not None and resources.get(session.resource) is session:
            del resources[session.resource]
            if not resources:
                del self.local[session.bare]

    def mark_available(self, session: C2SSession, priority: int, presence: Element) -> None:
        session.available = True
        session.priority = priority
        session.presence = presence

    def mark_unavailable(self, session: C2SSession) -> None:
        session.available = False
        session.presence = None

    def mark_interested(self, session: C2SSession) -> None:
        session.interested = True

    def mark_hibernated(self, session: C2SSession, hibernated: bool) -> None:
        pass  # this process's modules hear it as `SessionHibernated`

    #: one node: no session waits anywhere else
    hibernated_elsewhere: frozenset[object] = frozenset()

    @property
    def table(self) -> dict[str, dict[str, C2SSession]]:
        return self.local

    def is_bound(self, session: C2SSession) -> bool:
        resources = self.local.get(session.bare)
        return resources is not None and resources.get(session.resource) is session

    def bound_here(self, bare: str) -> bool:
        return bare in self.local

    def bound_anywhere(self, bare: str) -> bool:
        return bare in self.local

    def close_sessions(self, bare: str, condition: StreamErrorCondition, text: str) -> int:
        resources = self.local.get(bare)
        if resources is None:
            return 0
        sessions = list(resources.values())
        for session in sessions:
            session.close(condition, text)
        return len(sessions)


def _random_resource() -> str:
    return os.urandom(9).hex()
