"""Open XEP-0050 command sessions: which page of which command a requester is on.

A multi-stage command (XEP-0050 §3.4) keeps state between the requester's
IQs: the command's node, the page shown, the values submitted so far.  That
state lives here, behind `CommandSessions`, keyed by the requester's full JID
and the session id the responder made (§3.4: "the sessionid ... MUST be
unique" for the requester).

Bounded: at most `per_account` open sessions per bare JID and `total` in all;
each expires `lifetime` seconds after its last use (§3.4 allows the responder
to time sessions out: the requester is then told `<session-expired/>`).  An
expired session is reported once as expired, then forgotten.  A full table
refuses a new session (`SessionsFull`), after expired ones were swept.

Pure: time is passed in (`now`, monotonic seconds), nothing here awaits.  The
in-process table is the whole truth: a client's IQs are handled by the
process holding its connection, so a shared store is not needed for commands
(a cluster node only ever sees its own clients' sessions).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["CommandSession", "CommandSessions", "LocalCommandSessions", "Lookup", "SessionsFull"]


@dataclass(slots=True)
class CommandSession:
    """One open command: `page` is the index of the form shown last; `values` what
    the requester submitted on earlier pages, by field var."""

    id: str
    node: str
    owner: str
    host: str
    page: int = 0
    values: dict[str, list[str]] = field(default_factory=dict)
    expires: float = 0.0


class SessionsFull(Exception):
    """No room for another open session (the requester's share or the whole table)."""


class Lookup(enum.Enum):
    """Why `get` found no live session."""

    UNKNOWN = "unknown"
    EXPIRED = "expired"


class CommandSessions(Protocol):
    def open(self, owner: str, node: str, host: str, now: float) -> CommandSession:
        """A new session for full JID `owner`; raises SessionsFull."""
        ...

    def get(self, owner: str, session_id: str, now: float) -> CommandSession | Lookup:
        """The live session (its lifetime renewed), or why there is none."""
        ...

    def close(self, owner: str, session_id: str) -> None:
        """Forget the session (done or canceled); unknown ids are ignored."""
        ...

    def __len__(self) -> int: ...


def _bare(full: str) -> str:
    return full.partition("/")[0]


class LocalCommandSessions:
    """`CommandSessions` in this process's memory."""

    def __init__(self, *, lifetime: float, per_account: int, total: int) -> None:
        self.lifetime = lifetime
        self.per_account = per_account
        self.total = total
        self._sessions: dict[tuple[str, str], CommandSession] = {}
        #: open sessions per bare JID
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, owner: str, node: str, host: str, now: float) -> CommandSession:
        bare = _bare(owner)
        if self._counts.get(bare, 0) >= self.per_account:
            self._sweep(now, bare)
            if self._counts.get(bare, 0) >= self.per_account:
                raise SessionsFull(f"at most {self.per_account} command sessions may be open")
        if len(self._sessions) >= self.total:
            self._sweep(now)
            if len(self._sessions) >= self.total:
                raise SessionsFull("the server has too many open command sessions")
        session = CommandSession(
            secrets.token_hex(12), node, owner, host, expires=now + self.lifetime
        )
        self._sessions[(owner, session.id)] = session
        self._counts[bare] = self._counts.get(bare, 0) + 1
        return session

    def get(self, owner: str, session_id: str, now: float) -> CommandSession | Lookup:
        session = self._sessions.get((owner, session_id))
        if session is None:
            return Lookup.UNKNOWN
        if session.expires <= now:
            self.close(owner, session_id)
            return Lookup.EXPIRED
        session.expires = now + self.lifetime
        return session

    def close(self, owner: str, session_id: str) -> None:
        if self._sessions.pop((owner, session_id), None) is None:
            return
        bare = _bare(owner)
        left = self._counts[bare] - 1
        if left:
            self._counts[bare] = left
        else:
            del self._counts[bare]

    def _sweep(self, now: float, bare: str | None = None) -> None:
        """Forget expired sessions (of `bare` only, when given)."""
        stale = [
            key
            for key, s in self._sessions.items()
            if s.expires <= now and (bare is None or _bare(s.owner) == bare)
        ]
        for owner, session_id in stale:
            self.close(owner, session_id)
