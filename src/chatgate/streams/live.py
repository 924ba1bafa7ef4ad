"""The live registry: which streams are live, who publishes them, how many play.

The media servers' start and stop callbacks (nginx-rtmp ``publish`` /
``publish_done`` / ``play`` / ``play_done`` / ``update``, SRS ``on_publish`` /
``on_unpublish`` / ``on_play`` / ``on_stop``, Red5's invalidate) feed it, after
the policy (`chatgate.streams.policy`) has allowed the action.  It owns three
rules of issue 12: at most one live publisher per stream, viewer counts that
neither drift nor go negative, and revocation of live sessions.

`LiveStreams` is the interface; every method is a coroutine so that a shared
store (a Redis hash per stream with a Lua script for `try_publish`, a PostgreSQL
table with a unique index on the stream and ``INSERT ... ON CONFLICT``) can
implement it for several chatgate nodes.  `LocalLiveStreams` is the in-process
implementation: its methods never await, so each runs atomically on the event
loop.  Neither reads the clock: ``now`` is passed in, in Unix seconds (wall
time, because a shared store's entries outlive a process and its monotonic
clock).

Sessions and pairing
--------------------

A session is a `Publication` or a `Viewing`, named by the media server that
reported it (``node``: the adapter's configured name for that server) and the
media server's client id (nginx-rtmp's connection number, SRS's ``client_id``,
MediaMTX's ``id``).  Client ids are unique only per media server, so a session
is keyed by (stream, node, client id): a ``*_done`` pairs with its start only
when all three agree; a done without a start is ignored, a start repeated by the
same client is the same session (the hook was retried).  Counts come from the
stored sessions, so they cannot go negative.

Publishing
----------

`try_publish` accepts a new publisher when the stream has none.  While a
publisher is live, another is refused (``BUSY``), unless `LiveLimits.takeover`
is on and the newcomer is the same user (not anonymous): then the old
publication ends (``TAKEN_OVER``, returned in the verdict so the adapter can
end it where the media server allows).  The same (node, client id, publisher)
publishing again is a renewal (``RENEWED``): the repeated hook, or nginx-rtmp's
``on_update``, which the adapter passes with ``renewal=True``.  A renewal the
registry holds no session for (lost with an in-process registry's restart, or
expired) is a start under the same rules: the publisher is adopted again if
the stream is free, refused if another publisher holds it.

Ending sessions
---------------

`revoke` (by user, stream or credential: a stream key's or token's id) and a
takeover remove sessions and remember them for `LiveLimits.ended_ttl` seconds
(at most `LiveLimits.max_ended` of them, oldest forgotten first).  A *renewal*
of a remembered session is refused (``ENDED``): that is how nginx-rtmp's
``on_update`` ends a revoked publisher even when its credentials would still
pass.  A fresh start with the same client id is not a renewal: media servers
reuse client ids after they restart, and a fresh start has been through the
policy again.  Adapters should also re-run the policy on every renewal, so a
revoked right, key or token ends the session even after the memory is gone.

Restarts: the registry does not invent streams
----------------------------------------------

Callbacks sent while chatgate was down are lost, so after an outage the stored
sessions are only claims.  A store that outlived the outage calls `restarted`
when the authority comes back (not when one node of several restarts: the others
kept receiving callbacks).  The rule:

1. every session becomes *unconfirmed*, its ``last_seen`` set to the restart;
2. a session is confirmed again by its media server's next callback for it:
   a renewal (``on_update``) or a repeated start; a done removes it;
3. an unconfirmed session is not listed by `live` (unless asked), its viewers
   are not counted there, and `expire` removes it once `LiveLimits.unconfirmed_grace`
   seconds pass without a callback;
4. while unconfirmed, a publication still refuses *another* publisher (it may
   well be live) until the grace ends, but the *same* user may publish again at
   once: a streamer whose connection ended during the outage is not locked out.

A media server that restarted (SRS's ``server_id`` changes, nginx's client ids
start again) lost all its sessions: `forget_node` removes them.  With
`LiveLimits.stale_after` set (to a few ``on_update`` periods), a confirmed
session not renewed for that long no longer blocks a publisher and `expire`
removes it; leave it unset for media servers that send no periodic callback.

Bounds
------

A misbehaving or hostile media-server callback stream cannot grow the registry
without limit: streams with a publisher are capped at `LiveLimits.max_streams`
(``TOO_MANY_STREAMS``), and a stream with viewers only is made while the table
holds fewer than that many streams in all, so viewers of names nobody publishes
(which any anonymous client can make up) never keep a publisher out and the
table holds at most twice `max_streams`; viewers are capped at
`LiveLimits.max_viewers_per_stream` per stream (``TOO_MANY_VIEWERS``) and
`LiveLimits.max_viewers` in all (``VIEWER_LIMIT``); client ids and node names
are 1 to 64 printable ASCII characters, identities 1 to 2047 printable
characters and credential ids 1 to 64 printable ASCII characters; stream names
must be valid (`policy.check_stream_name`).  Anything else is refused
(``INVALID``), never truncated (two long ids cut to one prefix would pair
sessions that are not the same).
"""

from __future__ import annotations

import enum
import math
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final, Protocol

from chatgate.streams.policy import InvalidStreamName, check_stream_name

__all__ = [
    "MAX_CLIENT_ID",
    "MAX_IDENTITY",
    "LiveLimits",
    "LiveReason",
    "LiveStream",
    "LiveStreams",
    "LiveUnavailable",
    "LocalLiveStreams",
    "PlayVerdict",
    "Publication",
    "PublishVerdict",
    "Session",
    "Viewing",
    "check_now",
    "start_is_valid",
]

MAX_CLIENT_ID: Final = 64
"""Longest client id, node name or credential id (printable ASCII characters)."""
MAX_IDENTITY: Final = 2047
"""Longest publisher or viewer identity (a bare JID is at most 2047 bytes)."""

_TOKEN_TEXT: Final = re.compile(rf"[\x21-\x7e]{{1,{MAX_CLIENT_ID}}}")


@dataclass(frozen=True, slots=True)
class LiveLimits:
    """The registry's configuration; `ValueError` for values that make no sense."""

    max_streams: int = 10_000
    """Streams with a publisher; streams with viewers only are made while fewer
    than this many streams exist in all."""
    max_viewers_per_stream: int = 10_000
    max_viewers: int = 100_000
    """Viewers over all streams."""
    takeover: bool = False
    """Whether the same user publishing again ends their live publication instead
    of being refused."""
    unconfirmed_grace: float = 120.0
    """Seconds a session left unconfirmed by `restarted` waits for a callback."""
    stale_after: float | None = None
    """Seconds without a callback after which a confirmed session is gone (set it
    only with periodic callbacks such as nginx-rtmp's ``on_update``)."""
    max_ended: int = 10_000
    """Ended sessions remembered so that their renewals are refused."""
    ended_ttl: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("max_streams", "max_viewers_per_stream", "max_viewers", "max_ended"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        for name in ("unconfirmed_grace", "ended_ttl", "stale_after"):
            value = getattr(self, name)
            if value is None and name == "stale_after":
                continue
            if not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")


class LiveReason(enum.Enum):
    """Why a start was accepted or refused; a few fixed values, fit for counters."""

    STARTED = "started"
    RENEWED = "renewed"  # the same session again: a retried hook, a renewal
    TAKEN_OVER = "took over from the same publisher"
    BUSY = "another publisher is live"
    ENDED = "this session was ended"  # a renewal of a revoked or taken-over session
    TOO_MANY_STREAMS = "too many live streams"
    TOO_MANY_VIEWERS = "too many viewers on this stream"
    VIEWER_LIMIT = "too many viewers in all"
    INVALID = "invalid stream, client id, node or identity"


@dataclass(frozen=True, slots=True)
class Publication:
    """A live publisher.  `publisher` is the account (bare JID) or the token's user;
    None when unknown (anonymous, a token without a user)."""

    stream: str
    publisher: str | None
    client_id: str
    node: str
    started_at: float
    last_seen: float
    confirmed: bool = True
    credential: str | None = None
    """The id of the stream key or token used, so that revoking it ends the session."""


@dataclass(frozen=True, slots=True)
class Viewing:
    """A player of a stream (it may play before the stream is published)."""

    stream: str
    viewer: str | None
    client_id: str
    node: str
    started_at: float
    last_seen: float
    confirmed: bool = True
    credential: str | None = None


Session = Publication | Viewing


@dataclass(frozen=True, slots=True)
class PublishVerdict:
    """`try_publish`'s answer; `ended` is a publication this start replaced (a
    takeover, or an unconfirmed or stale entry): end it where the media server allows."""

    accepted: bool
    reason: LiveReason
    ended: Publication | None = None


@dataclass(frozen=True, slots=True)
class PlayVerdict:
    """`play_started`'s answer; `viewers` is the stream's viewer count after it."""

    accepted: bool
    reason: LiveReason
    viewers: int = 0


@dataclass(frozen=True, slots=True)
class LiveStream:
    """A row of `live`: a published stream and its viewer count."""

    stream: str
    publisher: str | None
    client_id: str
    node: str
    started_at: float
    last_seen: float
    confirmed: bool
    viewers: int


class LiveStreams(Protocol):
    """The live registry (module docstring).  ``now`` is Unix seconds; invalid
    peer text is refused (``INVALID``) or ignored (dones), never raised about."""

    async def try_publish(
        self,
        stream: str,
        publisher: str | None,
        client_id: str,
        node: str,
        now: float,
        *,
        credential: str | None = None,
        renewal: bool = False,
    ) -> PublishVerdict:
        """Record a publisher if the stream has none (see "Publishing")."""
        ...

    async def publish_done(self, stream: str, client_id: str, node: str) -> Publication | None:
        """End the publication of this client, or do nothing if it is not the one."""
        ...

    async def play_started(
        self,
        stream: str,
        viewer: str | None,
        client_id: str,
        node: str,
        now: float,
        *,
        credential: str | None = None,
        renewal: bool = False,
    ) -> PlayVerdict:
        """Count a viewer, within the bounds."""
        ...

    async def play_done(self, stream: str, client_id: str, node: str) -> Viewing | None:
        """Uncount the viewer of this client; a done without a start is ignored."""
        ...

    async def live(self, *, include_unconfirmed: bool = False) -> list[LiveStream]:
        """The published streams, by stream name."""
        ...

    async def revoke(
        self,
        now: float,
        *,
        user: str | None = None,
        stream: str | None = None,
        credential: str | None = None,
    ) -> list[Session]:
        """Remove and return the sessions matching every criterion given."""
        ...

    async def forget_node(self, node: str) -> list[Session]:
        """Remove and return every session of a media server that restarted."""
        ...

    async def restarted(self, now: float) -> None:
        """Mark every session unconfirmed (see "Restarts")."""
        ...

    async def expire(self, now: float) -> list[Session]:
        """Remove and return sessions past their grace or stale; forget old ends."""
        ...


class LiveUnavailable(Exception):
    """A shared registry cannot be reached: nothing can be decided (the hook is
    answered 503, never with a guess)."""


def start_is_valid(
    stream: str, identity: str | None, client_id: str, node: str, credential: str | None
) -> bool:
    """Whether a start's peer text is fit to store (the module docstring's
    "Bounds"): what every implementation checks before anything else."""
    return (
        _stream_ok(stream)
        and _id_ok(client_id)
        and _id_ok(node)
        and _identity_ok(identity)
        and _credential_ok(credential)
    )


def _id_ok(text: object) -> bool:
    return isinstance(text, str) and _TOKEN_TEXT.fullmatch(text) is not None


def _identity_ok(text: object) -> bool:
    return text is None or (
        isinstance(text, str) and 0 < len(text) <= MAX_IDENTITY and text.isprintable()
    )


def _credential_ok(text: object) -> bool:
    return text is None or _id_ok(text)


def _stream_ok(stream: object) -> bool:
    try:
        check_stream_name(stream)  # type: ignore[arg-type]
    except InvalidStreamName:
        return False
    return True


def _session_ok(session: Session) -> bool:
    return (
        _stream_ok(session.stream)
        and _id_ok(session.client_id)
        and _id_ok(session.node)
        and _identity_ok(_identity(session))
        and _credential_ok(session.credential)
        and isinstance(session.started_at, int | float)
        and isinstance(session.last_seen, int | float)
        and math.isfinite(session.started_at)
        and math.isfinite(session.last_seen)
    )


def _check_now(now: float) -> None:
    if not isinstance(now, int | float) or not math.isfinite(now):
        raise ValueError(f"now must be finite Unix seconds, not {now!r}")


#: `ValueError` unless `now` is finite Unix seconds (every implementation's check)
check_now = _check_now


class _Entry:
    """One stream's sessions."""

    __slots__ = ("publication", "viewers")

    def __init__(self) -> None:
        self.publication: Publication | None = None
        self.viewers: dict[tuple[str, str], Viewing] = {}  # (node, client id) -> viewing


_Key = tuple[str, str, str]  # (stream, node, client id)


class LocalLiveStreams:
    """`LiveStreams` in this process: dictionaries, bounded by `LiveLimits`.

    Lost when the process ends, unless saved: `sessions` and `version` let a
    `snapshot.SnapshotKeeper` save it when it changed, and `restore` takes the
    saved sessions back at start, unconfirmed, under the restart rule.  Without
    a snapshot nothing is invented either: a publisher still live elsewhere is
    adopted again by its next renewal.  `restarted` and `expire` also pin the
    rule every implementation follows."""

    def __init__(self, limits: LiveLimits | None = None) -> None:
        self.limits = limits or LiveLimits()
        self._streams: dict[str, _Entry] = {}
        self._viewer_total = 0
        self._ended: OrderedDict[_Key, float] = OrderedDict()  # -> forget after
        #: Bumped by every change a snapshot would see (sessions started, ended,
        #: confirmed, their credential changed; not a renewal's ``last_seen``
        #: alone): `snapshot.SnapshotKeeper` saves when it moved.
        self.version = 0

    # -- publishing ------------------------------------------------------------

    async def try_publish(
        self,
        stream: str,
        publisher: str | None,
        client_id: str,
        node: str,
        now: float,
        *,
        credential: str | None = None,
        renewal: bool = False,
    ) -> PublishVerdict:
        _check_now(now)
        if not (
            _stream_ok(stream)
            and _id_ok(client_id)
            and _id_ok(node)
            and _identity_ok(publisher)
            and _credential_ok(credential)
        ):
            return _PUBLISH_INVALID
        key = (stream, node, client_id)
        if not self._may_start(key, renewal, now):
            return _PUBLISH_ENDED
        entry = self._streams.get(stream)
        ended: Publication | None = None
        reason = LiveReason.STARTED
        if entry is not None and entry.publication is not None:
            current = entry.publication
            if (
                current.node == node
                and current.client_id == client_id
                and current.publisher == publisher
            ):
                if not current.confirmed or current.credential != credential:
                    self.version += 1
                entry.publication = replace(
                    current, last_seen=now, confirmed=True, credential=credential
                )
                return _PUBLISH_RENEWED
            same_user = publisher is not None and current.publisher == publisher
            if self._gone(current, now) or (not current.confirmed and same_user):
                ended = current
            elif not current.confirmed:
                return _PUBLISH_BUSY
            elif same_user and self.limits.takeover:
                ended = current
                reason = LiveReason.TAKEN_OVER
                self._remember_ended(current, now)
            else:
                return _PUBLISH_BUSY
        elif entry is None:
            # Only published streams count against a publish: viewers of streams
            # nobody publishes (any anonymous client can make them up) must not
            # lock publishers out.  Counted only when the table is full (rare).
            limit = self.limits.max_streams
            if len(self._streams) >= limit and self._published() >= limit:
                return _PUBLISH_TOO_MANY_STREAMS
            entry = self._streams[stream] = _Entry()
        entry.publication = Publication(
            stream, publisher, client_id, node, now, now, True, credential
        )
        self.version += 1
        return PublishVerdict(True, reason, ended)

    async def publish_done(self, stream: str, client_id: str, node: str) -> Publication | None:
        self._ended.pop((stream, node, client_id), None)
        entry = self._streams.get(stream)
        if entry is None:
            return None
        current = entry.publication
        if current is None or current.node != node or current.client_id != client_id:
            return None
        entry.publication = None
        self.version += 1
        self._drop_if_empty(stream, entry)
        return current

    # -- playing ---------------------------------------------------------------

    async def play_started(
        self,
        stream: str,
        viewer: str | None,
        client_id: str,
        node: str,
        now: float,
        *,
        credential: str | None = None,
        renewal: bool = False,
    ) -> PlayVerdict:
        _check_now(now)
        if not (
            _stream_ok(stream)
            and _id_ok(client_id)
            and _id_ok(node)
            and _identity_ok(viewer)
            and _credential_ok(credential)
        ):
            return _PLAY_INVALID
        if not self._may_start((stream, node, client_id), renewal, now):
            return _PLAY_ENDED
        entry = self._streams.get(stream)
        pair = (node, client_id)
        if entry is not None:
            known = entry.viewers.get(pair)
            if known is not None:
                if known.viewer == viewer:
                    if not known.confirmed or known.credential != credential:
                        self.version += 1
                    entry.viewers[pair] = replace(
                        known, last_seen=now, confirmed=True, credential=credential
                    )
                    return PlayVerdict(True, LiveReason.RENEWED, len(entry.viewers))
                # Another identity on the same client: a new viewing in its place.
                self.version += 1
                entry.viewers[pair] = Viewing(
                    stream, viewer, client_id, node, now, now, True, credential
                )
                return PlayVerdict(True, LiveReason.STARTED, len(entry.viewers))
            if len(entry.viewers) >= self.limits.max_viewers_per_stream:
                return PlayVerdict(False, LiveReason.TOO_MANY_VIEWERS, len(entry.viewers))
        elif len(self._streams) >= self.limits.max_streams:
            return _PLAY_TOO_MANY_STREAMS
        elif self.limits.max_viewers_per_stream == 0:
            return PlayVerdict(False, LiveReason.TOO_MANY_VIEWERS, 0)
        if self._viewer_total >= self.limits.max_viewers:
            return PlayVerdict(
                False, LiveReason.VIEWER_LIMIT, len(entry.viewers) if entry is not None else 0
            )
        if entry is None:
            entry = self._streams[stream] = _Entry()
        entry.viewers[pair] = Viewing(stream, viewer, client_id, node, now, now, True, credential)
        self._viewer_total += 1
        self.version += 1
        return PlayVerdict(True, LiveReason.STARTED, len(entry.viewers))

    async def play_done(self, stream: str, client_id: str, node: str) -> Viewing | None:
        self._ended.pop((stream, node, client_id), None)
        entry = self._streams.get(stream)
        if entry is None:
            return None
        viewing = entry.viewers.pop((node, client_id), None)
        if viewing is not None:
            self._viewer_total -= 1
            self.version += 1
            self._drop_if_empty(stream, entry)
        return viewing

    # -- listing -----------------------------------------------------------------

    async def live(self, *, include_unconfirmed: bool = False) -> list[LiveStream]:
        rows = []
        for name in sorted(self._streams):
            entry = self._streams[name]
            pub = entry.publication
            if pub is None or not (pub.confirmed or include_unconfirmed):
                continue
            viewers = sum(1 for v in entry.viewers.values() if v.confirmed or include_unconfirmed)
            rows.append(
                LiveStream(
                    pub.stream,
                    pub.publisher,
                    pub.client_id,
                    pub.node,
                    pub.started_at,
                    pub.last_seen,
                    pub.confirmed,
                    viewers,
                )
            )
        return rows

    # -- snapshots ---------------------------------------------------------------

    def sessions(self) -> list[Session]:
        """Every session held, unconfirmed ones included: what a snapshot saves
        (`snapshot.py`).  Never awaits, so it is one consistent moment."""
        rows: list[Session] = []
        for entry in self._streams.values():
            if entry.publication is not None:
                rows.append(entry.publication)
            rows.extend(entry.viewers.values())
        return rows

    def restore(self, sessions: Iterable[Session], now: float) -> int:
        """Take back sessions saved before a restart; how many were taken.

        Each comes back *unconfirmed* (see "Restarts"): a confirmed one with
        ``last_seen`` set to `now`, so its media server has `unconfirmed_grace`
        seconds to call back about it; one that was already unconfirmed keeps
        its ``last_seen`` (its grace began at an earlier restart and does not
        begin again with each one).  A stream that ended while chatgate was down
        is therefore gone after the grace, never invented.  Saved rows are not
        trusted: invalid ones, a second publisher of a stream, a session already
        held and whatever exceeds the bounds are skipped."""
        _check_now(now)
        limits = self.limits
        taken = 0
        for session in sessions:
            if not isinstance(session, Publication | Viewing) or not _session_ok(session):
                continue
            last_seen = now if session.confirmed else min(session.last_seen, now)
            restored = replace(session, confirmed=False, last_seen=last_seen)
            entry = self._streams.get(session.stream)
            if entry is None:
                if len(self._streams) >= limits.max_streams:
                    continue
                entry = _Entry()
            if isinstance(restored, Publication):
                if entry.publication is not None:
                    continue
                entry.publication = restored
            else:
                pair = (restored.node, restored.client_id)
                if (
                    pair in entry.viewers
                    or len(entry.viewers) >= limits.max_viewers_per_stream
                    or self._viewer_total >= limits.max_viewers
                ):
                    continue
                entry.viewers[pair] = restored
                self._viewer_total += 1
            self._streams.setdefault(session.stream, entry)
            taken += 1
        if taken:
            self.version += 1
        return taken

    def counts(self) -> tuple[int, int]:
        """(streams, viewers) held, unconfirmed included: what the bounds limit."""
        return len(self._streams), self._viewer_total

    # -- ending ------------------------------------------------------------------

    async def revoke(
        self,
        now: float,
        *,
        user: str | None = None,
        stream: str | None = None,
        credential: str | None = None,
    ) -> list[Session]:
        """Remove and return the sessions matching every criterion given (the
        user is the publisher or viewer identity), remembering them as ended.
        `ValueError` when no criterion is given: revoking everything is
        `forget_node` for each node, said explicitly.  Scans every session:
        revocations are rare, and the bounds bound the scan."""
        _check_now(now)
        if user is None and stream is None and credential is None:
            raise ValueError("revoke needs a user, a stream or a credential")

        def matches(identity: str | None, session: Session) -> bool:
            return (
                (user is None or identity == user)
                and (stream is None or session.stream == stream)
                and (credential is None or session.credential == credential)
            )

        names = [stream] if stream is not None else list(self._streams)
        ended = self._remove(names, lambda s: matches(_identity(s), s))
        for session in ended:
            self._remember_ended(session, now)
        return ended

    async def forget_node(self, node: str) -> list[Session]:
        for key in [k for k in self._ended if k[1] == node]:
            del self._ended[key]
        return self._remove(list(self._streams), lambda s: s.node == node)

    async def restarted(self, now: float) -> None:
        _check_now(now)
        if self._streams:
            self.version += 1
        for entry in self._streams.values():
            if entry.publication is not None:
                entry.publication = replace(entry.publication, confirmed=False, last_seen=now)
            for pair, viewing in entry.viewers.items():
                entry.viewers[pair] = replace(viewing, confirmed=False, last_seen=now)

    async def expire(self, now: float) -> list[Session]:
        _check_now(now)
        while self._ended:
            key, forget_after = next(iter(self._ended.items()))
            if forget_after > now:
                break
            del self._ended[key]
        return self._remove(list(self._streams), lambda s: self._gone(s, now))

    # -- internals ---------------------------------------------------------------

    def _published(self) -> int:
        """Streams with a publisher."""
        return sum(1 for entry in self._streams.values() if entry.publication is not None)

    def _stale(self, session: Session, now: float) -> bool:
        stale_after = self.limits.stale_after
        return (
            session.confirmed and stale_after is not None and now - session.last_seen > stale_after
        )

    def _gone(self, session: Session, now: float) -> bool:
        if not session.confirmed:
            return now - session.last_seen > self.limits.unconfirmed_grace
        return self._stale(session, now)

    def _may_start(self, key: _Key, renewal: bool, now: float) -> bool:
        """False for a renewal of a remembered ended session; a fresh start clears it."""
        forget_after = self._ended.get(key)
        if forget_after is None:
            return True
        if renewal and forget_after > now:
            return False
        del self._ended[key]
        return True

    def _remember_ended(self, session: Session, now: float) -> None:
        limits = self.limits
        if limits.max_ended == 0:
            return
        key = (session.stream, session.node, session.client_id)
        self._ended.pop(key, None)
        self._ended[key] = now + limits.ended_ttl
        while len(self._ended) > limits.max_ended:
            self._ended.popitem(last=False)

    def _remove(self, names: list[str], condition: _Condition) -> list[Session]:
        removed: list[Session] = []
        for name in names:
            entry = self._streams.get(name)
            if entry is None:
                continue
            pub = entry.publication
            if pub is not None and condition(pub):
                entry.publication = None
                removed.append(pub)
            for pair, viewing in list(entry.viewers.items()):
                if condition(viewing):
                    del entry.viewers[pair]
                    self._viewer_total -= 1
                    removed.append(viewing)
            self._drop_if_empty(name, entry)
        if removed:
            self.version += 1
        return removed

    def _drop_if_empty(self, name: str, entry: _Entry) -> None:
        if entry.publication is None and not entry.viewers:
            del self._streams[name]


class _Condition(Protocol):
    def __call__(self, session: Session, /) -> bool: ...


def _identity(session: Session) -> str | None:
    return session.publisher if isinstance(session, Publication) else session.viewer


_PUBLISH_INVALID: Final = PublishVerdict(False, LiveReason.INVALID)
_PUBLISH_ENDED: Final = PublishVerdict(False, LiveReason.ENDED)
_PUBLISH_BUSY: Final = PublishVerdict(False, LiveReason.BUSY)
_PUBLISH_RENEWED: Final = PublishVerdict(True, LiveReason.RENEWED)
_PUBLISH_TOO_MANY_STREAMS: Final = PublishVerdict(False, LiveReason.TOO_MANY_STREAMS)
_PLAY_INVALID: Final = PlayVerdict(False, LiveReason.INVALID)
_PLAY_ENDED: Final = PlayVerdict(False, LiveReason.ENDED)
_PLAY_TOO_MANY_STREAMS: Final = PlayVerdict(False, LiveReason.TOO_MANY_STREAMS)
