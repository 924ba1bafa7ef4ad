"""`remotehttp`: the client's digest exchange relayed to the operator's service,
as Wowza's remote HTTP authentication (seed 003), with its file fallback.

Exchange
--------

* A request without credentials: the service is asked (same method, no
  `Authorization`) and its 401 `WWW-Authenticate` challenge is relayed to the
  client as it is (realm, nonce, opaque are the service's).
* A request with `Authorization: Digest ...`: its `uri` must be the request's
  own target; the header is forwarded as it is, with
  ``WowzaRemoteAuthHash: H(username + response + shared_secret + uri)`` (MD5, or
  SHA-256 with `hash = "sha256"`) and ``WowzaStreamingEngineIdentity: <identity>``.
  The forwarded request uses the client's own method, so the service's A2 =
  H(method:uri) is the one the client computed.  A 2xx is a login, its groups
  from the `AdministratorGroups` header (comma-separated; none: read-only); a
  401 is a wrong guess (counted and held by the login gate).  Each (nonce, nc)
  is accepted once, so a captured header cannot be replayed even to a service
  that never checks its nonces (the seed's example does not).

Fallback (`backup_file`)
------------------------

When the service cannot be reached or times out (condition `connect`), or
answers a status listed in `backup_conditions`, the password file
(`password_file`, `password_encoding`, realm `[admin] realm`) is used for
`backup_retry` seconds with chatgate's own digest challenges and nonces; then
the service is asked again (and the period starts over if it still fails).  A
client answering a nonce chatgate did not mint meanwhile (the service's) gets
a fresh challenge with `stale=true`.  The period is per process.

Without a fallback, an unreachable service is answered 503 (never a login).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import aiohttp
from multidict import CIMultiDictProxy

from chatgate.http.admin_options import RemoteHttpOptions
from chatgate.http.auth.base import GROUPS, AuthRequest, Principal, Refusal, Unavailable
from chatgate.http.auth.digest import DigestMethod
from chatgate.http.auth.digest_core import DigestCredentials, Malformed, parse_digest
from chatgate.http.auth.login import AdminLogin, plain_http_refusal
from chatgate.http.auth.nonces import NonceCounts, NonceUse

if TYPE_CHECKING:
    from chatgate.auth.gate import Attempt

__all__ = ["RemoteHttpMethod", "remote_auth_hash"]

log = logging.getLogger("chatgate.http.auth")

#: the service's own headers
HASH_HEADER = "WowzaRemoteAuthHash"
IDENTITY_HEADER = "WowzaStreamingEngineIdentity"
GROUPS_HEADER = "AdministratorGroups"
#: longest body read from the service (it is discarded)
_MAX_BODY = 64 * 1024


class _Unreachable(Exception):
    pass


def remote_auth_hash(algorithm: str, username: str, response: str, secret: str, uri: str) -> str:
    """WowzaRemoteAuthHash = H(username + response + shared secret + URI), hex."""
    return hashlib.new(algorithm, f"{username}{response}{secret}{uri}".encode()).hexdigest()


def groups_of(header: str | None) -> frozenset[str]:
    """The groups an `AdministratorGroups` value names (unknown names dropped)."""
    if not header:
        return frozenset()
    return frozenset(g.strip() for g in header.split(",") if g.strip() in GROUPS)


class RemoteHttpMethod:
    name = "remotehttp"
    schemes = frozenset({"digest"})

    def __init__(
        self,
        options: RemoteHttpOptions,
        login: AdminLogin,
        counts: NonceCounts,
        *,
        lifetime: float,
        allow_plain_http: bool,
        fallback: DigestMethod | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert options.url is not None and options.shared_secret is not None
        self.options = options
        self.url = options.url
        self.login = login
        self.counts = counts
        self.lifetime = lifetime
        self.allow_plain_http = allow_plain_http
        self.fallback = fallback if options.backup_file else None
        self.clock = clock
        self._secret = options.shared_secret.get_secret_value()
        self._statuses = frozenset(c for c in options.backup_conditions if isinstance(c, int))
        self._on_connect = "connect" in options.backup_conditions
        self._fallback_until = float("-inf")
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------ fallback state

    def in_fallback(self) -> bool:
        return self.fallback is not None and self.clock() < self._fallback_until

    def _falls_back(self, condition: str | int) -> bool:
        """Start a fallback period if `condition` is one of the configured ones."""
        if self.fallback is None:
            return False
        if condition == "connect" and not self._on_connect:
            return False
        if isinstance(condition, int) and condition not in self._statuses:
            return False
        self._fallback_until = self.clock() + self.options.backup_retry
        log.warning(
            "admin: remotehttp: %s %s; using %s for %.0f s",
            self.url,
            "cannot be reached" if condition == "connect" else f"answered {condition}",
            "the password file",
            self.options.backup_retry,
        )
        return True

    # ------------------------------------------------------------ the service

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.options.timeout),
                auto_decompress=False,
            )
        return self._session

    async def _ask(self, method: str, headers: dict[str, str]) -> tuple[int, CIMultiDictProxy[str]]:
        """The service's status and headers.  Raises _Unreachable (connect, timeout)."""
        try:
            async with self._client().request(
                method, self.url, headers=headers, allow_redirects=False
            ) as answer:
                await answer.content.read(_MAX_BODY)
                return answer.status, answer.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.info("admin: remotehttp: %s: %s", self.url, exc.__class__.__name__)
            raise _Unreachable(str(exc)) from exc

    async def _service_challenges(self, method: str) -> Sequence[str]:
        """The service's challenge, or the fallback's.  Raises Unavailable."""
        try:
            status, headers = await self._ask(method, {})
        except _Unreachable:
            if self._falls_back("connect"):
                assert self.fallback is not None
                return self.fallback.challenges()
            raise Unavailable("the authentication service cannot be reached", 5) from None
        if status in self._statuses and self._falls_back(status):
            assert self.fallback is not None
            return self.fallback.challenges()
        values = headers.getall("WWW-Authenticate", [])
        if status != 401 or not values:
            log.warning(
                "admin: remotehttp: %s answered %d with %d challenge(s) to a request"
                " without credentials (expected 401 and a Digest challenge)",
                self.url,
                status,
                len(values),
            )
            if status >= 500:
                raise Unavailable(f"the authentication service answered {status}", 5)
        return values

    # ------------------------------------------------------------ the method

    async def challenge(self, request: AuthRequest) -> Sequence[str]:
        if self.in_fallback():
            assert self.fallback is not None
            return self.fallback.challenges()
        return await self._service_challenges(request.method)

    async def _refuse(self, request: AuthRequest, why: str) -> Refusal:
        log.info("admin: remotehttp credentials from %s refused: %s", request.address or "-", why)
        try:
            challenges = await self.challenge(request)
        except Unavailable as exc:
            return Refusal(503, str(exc), retry_after=exc.retry_after)
        return Refusal(401, why, tuple(challenges))

    async def authenticate(self, request: AuthRequest) -> Principal | Refusal:
        refusal = plain_http_refusal(request, self.allow_plain_http)
        if refusal is not None:
            return refusal
        try:
            creds = parse_digest(request.authorization or "")
        except Malformed as exc:
            return await self._refuse(request, f"malformed digest credentials: {exc}")
        fallback = self.fallback
        ours = fallback is not None and fallback.codec.issued_at(creds.nonce) is not None
        if self.in_fallback():
            assert fallback is not None
            if not ours:
                log.info(
                    "admin: remotehttp: %s answered the service's nonce during a fallback"
                    " period: challenged again (stale)",
                    request.address or "-",
                )
                return Refusal(401, "authenticate again", tuple(fallback.challenges(stale=True)))
            return await fallback.authenticate(request)
        if ours:
            return await self._refuse(request, "the fallback period is over: authenticate again")
        if creds.uri != request.target:
            return await self._refuse(request, "uri is not this request's target")
        return await self._relay(request, creds)

    async def _relay(self, request: AuthRequest, creds: DigestCredentials) -> Principal | Refusal:
        entered = self.login.enter(request, creds.username)
        if isinstance(entered, Refusal):
            return entered
        headers = {
            "Authorization": request.authorization or "",
            HASH_HEADER: remote_auth_hash(
                self.options.hash, creds.username, creds.response, self._secret, creds.uri
            ),
        }
        if self.options.identity is not None:
            headers[IDENTITY_HEADER] = self.options.identity
        try:
            status, answer = await self._ask(request.method, headers)
        except asyncio.CancelledError:
            self.login.gate.failed(entered, "not-authorized", mechanism="remotehttp (abandoned)")
            raise
        except _Unreachable:
            self.login.gate.released(entered)
            if self._falls_back("connect"):
                assert self.fallback is not None
                return Refusal(
                    401, "authenticate again", tuple(self.fallback.challenges(stale=True))
                )
            return Refusal(503, "the authentication service cannot be reached", retry_after=5)
        if status in self._statuses and self._falls_back(status):
            self.login.gate.released(entered)
            assert self.fallback is not None
            return Refusal(401, "authenticate again", tuple(self.fallback.challenges(stale=True)))
        if 200 <= status < 300:
            return await self._accepted(request, creds, entered, answer)
        if status == 401:
            challenges = answer.getall("WWW-Authenticate", [])
            if not challenges:
                try:
                    challenges = list(await self._service_challenges(request.method))
                except Unavailable:
                    challenges = []
            return await self.login.failed(entered, challenges)
        self.login.gate.released(entered)
        log.warning("admin: remotehttp: %s answered %d to a login", self.url, status)
        return Refusal(503, f"the authentication service answered {status}", retry_after=5)

    async def _accepted(
        self,
        request: AuthRequest,
        creds: DigestCredentials,
        entered: Attempt,
        answer: CIMultiDictProxy[str],
    ) -> Principal | Refusal:
        now = time.time()
        nc = int(creds.nc, 16) if creds.nc is not None else 1
        use = await self.counts.advance(f"remote:{creds.nonce}", now, nc, now)
        if use is not NonceUse.FRESH:
            self.login.rejected(entered, "replayed-nonce-count")
            log.warning(
                "admin: remotehttp replay refused: %s from %s repeated nonce count %s",
                creds.username,
                request.address or "-",
                creds.nc or "(none)",
            )
            return await self._refuse(request, "nonce count already used")
        groups = groups_of(answer.get(GROUPS_HEADER))
        principal = Principal(creds.username, groups, self.name)
        return self.login.succeeded(entered, request, principal)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
