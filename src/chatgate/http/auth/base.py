"""What every HTTP authentication method shares: the request it sees, who it
proves (`Principal`), how it refuses (`Refusal`), and what groups allow.

Methods are sans-aiohttp: they see an `AuthRequest` (method, target, the
`Authorization` header, the client's address, whether the connection is
secure), so they are tested without a server.  Groups are Wowza's: `admin`
may do everything, `advUser` everything but managing administrators, tokens
and the configuration, `readOnly` only read.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

GROUPS = ("admin", "advUser", "readOnly")


class Access(enum.Enum):
    """What a route needs."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


_GROUP_ACCESS = {
    "admin": frozenset(Access),
    "advUser": frozenset({Access.READ, Access.WRITE}),
    "readOnly": frozenset({Access.READ}),
}


@dataclass(frozen=True)
class AuthRequest:
    """An HTTP request as authentication sees it."""

    method: str
    #: the request target as sent (path and query): digest's `uri`
    target: str
    authorization: str | None
    #: the client's address (through trusted proxies), for throttling and logs
    address: str | None
    #: TLS, or a loopback client: where a password may travel
    secure: bool
    loopback: bool = False
    #: the `Host` header names this machine (a loopback address, `localhost`, the
    #: host name or a served domain): false for another site's name pointed at
    #: 127.0.0.1 by a page in a local browser (DNS rebinding)
    local_host: bool = True


@dataclass(frozen=True)
class Principal:
    """Who a request proved to be."""

    name: str
    groups: frozenset[str]
    #: the method that proved it (`basic`, `digest`, ..., or `console` for a cookie)
    method: str
    #: a bearer token's id, so the audit log can tell tokens apart
    token_id: str | None = None

    def allows(self, access: Access) -> bool:
        """No group at all is read-only (seed 003: no AdministratorGroups header)."""
        groups = self.groups or frozenset({"readOnly"})
        return any(access in _GROUP_ACCESS.get(g, ()) for g in groups)

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return f"token:{self.token_id}" if self.token_id else self.name


@dataclass(frozen=True)
class Refusal:
    """An unauthenticated answer: 401 with challenges, 403, 429 or 503."""

    status: int
    message: str
    #: `WWW-Authenticate` values (401)
    challenges: tuple[str, ...] = ()
    #: seconds, for 429 and 503
    retry_after: float | None = None
    #: further headers to pass back (a relayed service's own)
    headers: tuple[tuple[str, str], ...] = field(default=())


class Unavailable(Exception):
    """Raised by `challenge` when a method cannot say now how to authenticate (its
    remote service is down and there is no fallback): the chain answers 503."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HttpAuthenticator(Protocol):
    """One authentication method."""

    #: the configuration's name for it: `basic`, `digest`, ...
    name: str
    #: `Authorization` schemes it answers, lower case (`basic`, `digest`, `bearer`);
    #: empty for `none`, which needs no header
    schemes: frozenset[str]

    async def challenge(self, request: AuthRequest) -> Sequence[str]:
        """`WWW-Authenticate` values for a request that sent no credentials
        (`remotehttp` asks its service for them).  Raises Unavailable."""
        ...

    async def authenticate(self, request: AuthRequest) -> Principal | Refusal:
        """Check the request's credentials (its scheme is one of `schemes`)."""
        ...

    async def close(self) -> None: ...


class AuthChain:
    """The methods of one route set: the `Authorization` scheme picks the method;
    without credentials every method challenges (or `none` lets the request in)."""

    def __init__(self, methods: Sequence[HttpAuthenticator]) -> None:
        self.methods = tuple(methods)
        self._by_scheme = {s: m for m in self.methods for s in m.schemes}

    async def authenticate(self, request: AuthRequest) -> Principal | Refusal:
        if request.authorization:
            scheme = request.authorization.split(None, 1)[0].lower()
            method = self._by_scheme.get(scheme)
            if method is not None:
                return await method.authenticate(request)
        for method in self.methods:
            if not method.schemes:  # `none`
                return await method.authenticate(request)
        challenges: list[str] = []
        unavailable: Unavailable | None = None
        for method in self.methods:
            try:
                challenges.extend(await method.challenge(request))
            except Unavailable as exc:
                unavailable = exc
        if unavailable is not None:
            # A client of that method would get no way in from the others' challenges.
            return Refusal(
                503, str(unavailable), tuple(challenges), retry_after=unavailable.retry_after
            )
        return Refusal(401, "authentication required", tuple(challenges))
