"""Where BOSH sessions are found by sid (the per-process state of BOSH, behind an
interface, as DESIGN.md's fifth seam asks).

Must not: know what a session does; it only keeps them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from chatgate.http.bosh_session import BoshSession, Response


class BoshSessions(Protocol):
    """Where live sessions are found by sid.

    Each process holds the sessions it created in memory (`LocalBoshSessions`):
    the session object, with its held HTTP requests and timers, always lives in
    the process that created it.  When chatgate runs as several nodes, a request
    for a sid held elsewhere goes to its owner through `SessionsElsewhere`."""

    def get(self, sid: str) -> BoshSession | None: ...

    def add(self, session: BoshSession) -> bool:
        """Keep a new session; False when the store is full (`max_sessions`)."""
        ...

    def remove(self, session: BoshSession) -> None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[BoshSession]: ...


class LocalBoshSessions:
    """`BoshSessions` in this process's memory, bounded by `max_sessions`."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._by_sid: dict[str, BoshSession] = {}

    def get(self, sid: str) -> BoshSession | None:
        return self._by_sid.get(sid)

    def add(self, session: BoshSession) -> bool:
        if len(self._by_sid) >= self.max_sessions:
            return False
        self._by_sid[session.sid] = session
        return True

    def remove(self, session: BoshSession) -> None:
        if self._by_sid.get(session.sid) is session:
            del self._by_sid[session.sid]

    def __len__(self) -> int:
        return len(self._by_sid)

    def __iter__(self) -> Iterator[BoshSession]:
        return iter(list(self._by_sid.values()))


class SessionsElsewhere(Protocol):
    """The sessions other nodes of a cluster hold (`cluster/bosh.py`): consulted
    only for a sid this process does not hold, so the local path is unchanged."""

    def new_sid(self) -> str:
        """A sid for a new session of this process, telling the others it is ours."""
        ...

    async def forward(self, sid: str, data: bytes) -> tuple[Response, str] | None:
        """The owner's answer to one request body (and its Content-Type), or None
        when `sid` would be this process's: then it is not found."""
        ...
