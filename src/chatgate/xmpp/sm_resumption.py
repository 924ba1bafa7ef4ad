"""XEP-0198 §5 resumption: which stream-managed sessions may be resumed, and by whom.

A session that enabled resumption gets an unguessable token (`new_token`), tied
to its account: a `<resume previd/>` finds it only for the same bare JID, and
anyone else is told item-not-found, exactly as for a token that never existed
(so a token says nothing to another account).  While the session lives (its
stream open, or hibernated after the connection dropped) the table maps the
token to the `Resumable` holding it; when the session ends for good the table
remembers, for a while and within a bound, how many stanzas it had handled, so
a late `<resume/>` gets `<failed h='...'/>` (§5: the client then knows which of
its stanzas arrived).

`ResumptionTable` is the interface, `LocalResumptionTable` this process's, and
it stays per process in a cluster too: a token names the node that issued it
(`sm_tokens.py`), and a `<resume/>` that reaches another node asks that node to
hand the session over (`SmPolicy.handover`: `cluster/sm_handover.py` and
`sm_takeover.py`).  Nothing about tokens is written to Redis; an ended
session's 'h' is remembered where it ended, and that node tells it to a node
asking for the token (`<failed h/>` there too).

The registrations that carry the configuration to connections live here too:
`StreamManagementFeature` (the `<sm/>` stream feature with its `SmPolicy`) and
`ClientStateFeature` (`<csi/>` with its limits).  Connections find them among
the server's stream features, so a module that is off registers nothing and
the connection refuses the feature.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from chatgate.modules.base import StreamFeature
from chatgate.xmpp.sm_queue import QueueLimits

if TYPE_CHECKING:
    from chatgate.xmpp.sm_client_state import HoldLimits
    from chatgate.xmpp.sm_handover_types import Handover

#: Ended sessions whose 'h' is remembered for `<failed h/>`.
REMEMBERED_ENDED = 4096


def new_token() -> str:
    """An SM-ID (XEP-0198 §5): 192 random bits, never reused."""
    return secrets.token_urlsafe(24)


class Resumable(Protocol):
    """What holds a resumable session: the connection it was last on."""

    def hand_over(self) -> None:
        """Give the session up to a resuming connection: stop its hibernation
        timer, close the old stream if it is still open (with `<conflict/>`),
        and forget the session without ending it."""
        ...


@dataclass(frozen=True, slots=True)
class Ended:
    """A token whose session is gone: `h` is what it had handled, when known."""

    h: int | None = None


class ResumptionTable(Protocol):
    def add(self, token: str, owner: str, holder: Resumable) -> None:
        """`token` (of `owner`, a bare JID) is now held by `holder`."""
        ...

    def find(self, token: str, owner: str) -> Resumable | Ended:
        """The holder of `owner`'s `token`, or `Ended` (unknown, expired, another
        account's: all alike)."""
        ...

    def remove(self, token: str, owner: str, handled: int) -> None:
        """The session ended for good after handling `handled` stanzas."""
        ...

    def __len__(self) -> int: ...


class LocalResumptionTable:
    """`ResumptionTable` for this process (see the module docstring)."""

    __slots__ = ("_ended", "_live")

    def __init__(self) -> None:
        self._live: dict[str, tuple[str, Resumable]] = {}
        self._ended: OrderedDict[str, tuple[str, int]] = OrderedDict()

    def add(self, token: str, owner: str, holder: Resumable) -> None:
        self._live[token] = (owner, holder)

    def find(self, token: str, owner: str) -> Resumable | Ended:
        live = self._live.get(token)
        if live is not None and live[0] == owner:
            return live[1]
        ended = self._ended.get(token)
        if ended is not None and ended[0] == owner:
            return Ended(ended[1])
        return Ended()

    def remove(self, token: str, owner: str, handled: int) -> None:
        if self._live.pop(token, None) is None:
            return
        ended = self._ended
        ended[token] = (owner, handled)
        while len(ended) > REMEMBERED_ENDED:
            ended.popitem(last=False)

    def __len__(self) -> int:
        return len(self._live)


@dataclass(frozen=True, slots=True)
class SmPolicy:
    """`[modules.stream_management]`, resolved for connections."""

    #: how long a dropped session waits for its client when it asks for no other
    resume_timeout: int
    #: the longest a client may ask for (`<enable max/>`)
    max_resume_timeout: int
    limits: QueueLimits
    #: ask for an ack (`<r/>`) once this many stanzas went out since the last ask
    ack_after_stanzas: int
    #: ... or this long after a stanza went out unacknowledged
    ack_after_seconds: float
    table: ResumptionTable
    #: resumption across the nodes of a cluster (None: one process)
    handover: Handover | None = None

    def resume_seconds(self, asked: str | None) -> int:
        """The resumption time for a client's `<enable max/>` (XEP-0198 §5: the
        server's preferred maximum is the one announced in `<enabled max/>`)."""
        if asked is not None and asked.isdigit() and int(asked) > 0:
            return min(int(asked), self.max_resume_timeout)
        return min(self.resume_timeout, self.max_resume_timeout)


@dataclass(frozen=True, slots=True)
class StreamManagementFeature(StreamFeature):
    """The `<sm xmlns='urn:xmpp:sm:3'/>` feature, carrying its policy to connections."""

    policy: SmPolicy | None = None


@dataclass(frozen=True, slots=True)
class ClientStateFeature(StreamFeature):
    """The `<csi xmlns='urn:xmpp:csi:0'/>` feature, carrying its limits."""

    limits: HoldLimits | None = None


F = TypeVar("F", bound=StreamFeature)


def feature_of(features: list[StreamFeature], kind: type[F], domain: str) -> F | None:
    """The registration of `kind` offered on `domain`, if any."""
    for feature in features:
        if isinstance(feature, kind) and (feature.hosts is None or domain in feature.hosts):
            return feature
    return None
