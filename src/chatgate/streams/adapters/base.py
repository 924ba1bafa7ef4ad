"""The types every media-server adapter shares: the request it reads, the
question it asks, the verdict it is given and the response it writes.

An adapter is a pair of pure functions (see `Adapter`):

* ``parse(HookRequest) -> Question | Verdict``: the media server's exact request
  turned into a transport-neutral `Question`, or a `Verdict` the adapter can give
  on its own (a malformed request, an invalid stream name, a required token that
  is missing).  Never raises for any input.
* ``respond(HookRequest, Question | None, Verdict) -> HookResponse``: the answer
  the media server accepts, byte for byte.

Between the two, the authority (gate + policy + tokens + live registry, wired by
the HTTP routes under ``/hooks/``) answers the question.  This module and the
adapters never await, never read the clock, never touch storage and never log.

Credentials
-----------

A `Question` carries at most one kind of credential, decided by the adapter from
the media server's fields (each adapter's docstring says which fields):

``NONE``
    nothing was sent: the caller is anonymous.
``PASSWORD``
    an account name and its password, for the login gate.
``TOKEN``
    a signed stream token (`chatgate.streams.tokens`); ``username`` is what the
    client also sent, for the log only (a token never proves an account).
``STREAM_KEY``
    a per-user stream key; ``username`` when the client named one (then the key
    must be that user's), else None (the key alone names its user).
``INVALID``
    something was sent that cannot be read one way: a credential field given
    twice, two kinds at once (a password and a token), a password without a
    name, a value that is not UTF-8 or is too long.  ``problem`` says which,
    without the secret.  **The authority must deny it** (fail closed): an
    ambiguous credential is never treated as anonymous.

The secret never appears in ``repr`` or ``str`` (so never in a log line or a
test failure message by accident).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from chatgate.streams.tokens import StreamAction

__all__ = [
    "MAX_SECRET_LENGTH",
    "MAX_USERNAME_LENGTH",
    "Adapter",
    "CredentialKind",
    "Credentials",
    "HookAction",
    "HookRequest",
    "HookResponse",
    "Question",
    "Verdict",
    "VerdictKind",
]

MAX_USERNAME_LENGTH: Final = 1023
"""Longest account name a hook may carry, in characters (a JID localpart is at
most 1023 bytes)."""
MAX_SECRET_LENGTH: Final = 1024
"""Longest password, token or stream key a hook may carry, in characters."""

_CLIENT_ADDRESS: Final = re.compile(r"[\x21-\x7e]{1,64}")


def valid_client_address(text: str) -> bool:
    """Whether a media server's report of its client's address is usable: visible
    ASCII, at most 64 characters (it goes into logs and the throttle's tables)."""
    return _CLIENT_ADDRESS.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class HookRequest:
    """One HTTP request from a media server, as the route received it.

    ``path`` is the suffix after ``/hooks/<adapter>/`` (``"publish"``,
    ``"on_play"``, ``"auth"``); ``query`` the raw bytes after ``?`` (empty when
    none); ``headers`` with lower-case names; ``peer`` the address of the TCP
    peer (the media server, not its client)."""

    method: str
    path: str
    query: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    peer: str | None = None


class HookAction(enum.Enum):
    """What the media server reports or asks, in transport-neutral words."""

    CONNECT = "connect"  # nginx-rtmp on_connect, SRS on_connect: no stream yet
    PUBLISH = "publish"
    PLAY = "play"
    PUBLISH_DONE = "publish_done"
    PLAY_DONE = "play_done"
    UPDATE_PUBLISH = "update_publish"  # nginx-rtmp on_update: a live publisher renews
    UPDATE_PLAY = "update_play"
    ADMIN = "admin"  # MediaMTX api, metrics, pprof: the media server's own admin
    STREAM_KEY = "stream_key"  # Wowza's token provider: "what is `name`'s stream key?"

    @property
    def stream_action(self) -> StreamAction | None:
        """The policy action this asks or reports about (None for connect, admin, key)."""
        return _STREAM_ACTIONS.get(self)

    @property
    def decides(self) -> bool:
        """Whether the media server acts on the answer (False for the dones, whose
        answers are ignored or only logged)."""
        return self not in (HookAction.PUBLISH_DONE, HookAction.PLAY_DONE)


_STREAM_ACTIONS: Final = {
    HookAction.PUBLISH: StreamAction.PUBLISH,
    HookAction.PUBLISH_DONE: StreamAction.PUBLISH,
    HookAction.UPDATE_PUBLISH: StreamAction.PUBLISH,
    HookAction.PLAY: StreamAction.PLAY,
    HookAction.PLAY_DONE: StreamAction.PLAY,
    HookAction.UPDATE_PLAY: StreamAction.PLAY,
}


class CredentialKind(enum.Enum):
    """Which credential a question carries (module docstring, "Credentials")."""

    NONE = "none"
    PASSWORD = "password"
    TOKEN = "token"
    STREAM_KEY = "stream key"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client brought.  ``secret`` is the password, token or stream key;
    ``problem`` why an INVALID credential is one.  Build with the class methods."""

    kind: CredentialKind
    username: str | None = None
    secret: str | None = None
    problem: str | None = None

    @classmethod
    def none(cls) -> Credentials:
        return _NONE

    @classmethod
    def password(cls, username: str, password: str) -> Credentials:
        return cls(CredentialKind.PASSWORD, username, password)

    @classmethod
    def token(cls, token: str, username: str | None = None) -> Credentials:
        return cls(CredentialKind.TOKEN, username, token)

    @classmethod
    def stream_key(cls, key: str, username: str | None = None) -> Credentials:
        return cls(CredentialKind.STREAM_KEY, username, key)

    @classmethod
    def invalid(cls, problem: str, username: str | None = None) -> Credentials:
        return cls(CredentialKind.INVALID, username, None, problem)

    def __repr__(self) -> str:
        parts = [f"kind={self.kind.name}"]
        if self.username is not None:
            parts.append(f"username={self.username!r}")
        if self.secret is not None:
            parts.append("secret=<hidden>")
        if self.problem is not None:
            parts.append(f"problem={self.problem!r}")
        return f"Credentials({', '.join(parts)})"

    __str__ = __repr__


_NONE: Final = Credentials(CredentialKind.NONE)


@dataclass(frozen=True, slots=True)
class Question:
    """What a media server asks (or reports), ready for the authority.

    ``app`` and ``name`` are the media server's own fields as given (nginx-rtmp
    ``app``/``name``, SRS ``app``/``stream``, MediaMTX ``path`` as ``name``,
    Red5 ``streamID`` as ``name`` with the configured application); ``stream``
    is the joined name, already valid (`policy.check_stream_name`), or None when
    the action has no stream (connect, admin, key).  ``client_address`` is the
    address the media server reports for its client (the one the throttle and
    address-bound tokens use), never the media server's own.  ``client_id``
    pairs starts with dones on that ``node`` (the adapter's configured name for
    the media server).  ``detail`` is the media server's own words for the log
    (``"read via rtsp"``); it never holds a secret.  ``instance`` is the media
    server's own run id where it sends one (SRS ``server_id``): when it changes,
    that media server restarted and its sessions are gone.  For STREAM_KEY,
    ``name`` is the account whose key is asked for."""

    adapter: str
    action: HookAction
    stream: str | None
    credentials: Credentials
    client_address: str | None = None
    client_id: str | None = None
    node: str = ""
    app: str | None = None
    name: str | None = None
    detail: str = ""
    instance: str | None = None


class VerdictKind(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    UNAUTHENTICATED = "unauthenticated"  # no or unusable credentials: ask for them
    RENAME = "rename"  # allow, and the media server uses `stream` instead
    MALFORMED = "malformed"  # the request itself is wrong (4xx)
    REVEAL = "reveal"  # Wowza's token provider: here is the user's stream key


@dataclass(frozen=True, slots=True)
class Verdict:
    """The authority's (or an adapter's own) answer.  ``reason`` is short text for
    the log and, where the media server shows it, the response body: never a
    secret, never "unknown user" versus "wrong password" detail.  ``stream`` is a
    RENAME's new full stream name (``app/name``); ``url`` an ALLOW's signed URL
    (Red5); ``secret`` a REVEAL's stream key (hidden from ``repr``)."""

    kind: VerdictKind
    reason: str = ""
    stream: str | None = None
    url: str | None = None
    secret: str | None = field(default=None, repr=False)

    @classmethod
    def allow(cls, url: str | None = None) -> Verdict:
        return _ALLOW if url is None else cls(VerdictKind.ALLOW, url=url)

    @classmethod
    def deny(cls, reason: str = "denied") -> Verdict:
        return cls(VerdictKind.DENY, reason)

    @classmethod
    def unauthenticated(cls, reason: str = "credentials required") -> Verdict:
        return cls(VerdictKind.UNAUTHENTICATED, reason)

    @classmethod
    def rename(cls, stream: str) -> Verdict:
        return cls(VerdictKind.RENAME, stream=stream)

    @classmethod
    def malformed(cls, reason: str) -> Verdict:
        return cls(VerdictKind.MALFORMED, reason)

    @classmethod
    def reveal(cls, secret: str) -> Verdict:
        return cls(VerdictKind.REVEAL, secret=secret)

    @property
    def allowed(self) -> bool:
        return self.kind in (VerdictKind.ALLOW, VerdictKind.RENAME, VerdictKind.REVEAL)


_ALLOW: Final = Verdict(VerdictKind.ALLOW)


@dataclass(frozen=True, slots=True)
class HookResponse:
    """The HTTP response to write: ``close`` asks the route to close the
    connection after it (nginx-rtmp reads until the connection closes)."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    close: bool = False


class Adapter(Protocol):
    """One media server's contract (module docstring)."""

    name: str
    """The registry name and the URL segment: ``/hooks/<name>/<endpoint>``."""
    endpoints: frozenset[str]
    """The path suffixes it serves."""

    def parse(self, request: HookRequest) -> Question | Verdict:
        """The question in `request`, or the adapter's own verdict; never raises."""
        ...

    def respond(
        self, request: HookRequest, question: Question | None, verdict: Verdict
    ) -> HookResponse:
        """The response the media server accepts for `verdict`; ``question`` is
        None when `parse` gave the verdict itself."""
        ...
