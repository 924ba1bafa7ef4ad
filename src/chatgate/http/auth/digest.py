"""`digest`: RFC 7616 Digest (MD5 and SHA-256, qop=auth) against a source of HA1
secrets: the administrators chatgate keeps (`digest`), an `admin.password` file
(`digestfile`, `digest_file.py`), or that file as `remotehttp`'s fallback.

The protocol's rules are in `digest_core.py`; this module applies them to one
request and settles it with the login gate.  Only a response checked against a
secret is a guess (counted, held when wrong); a malformed header, another realm
or uri, a missing qop, a nonce we did not mint are refused at once with fresh
challenges.  The right response with an expired nonce gets `stale=true`; the
right response with an `nc` already seen is a replay, refused (logged, not
counted as a guess: it proves nothing about the password).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from chatgate.http.auth.base import AuthRequest, Principal, Refusal
from chatgate.http.auth.digest_core import (
    HEX_LENGTH,
    DigestCredentials,
    Malformed,
    NonceCodec,
    challenge,
    parse_digest,
    response,
)
from chatgate.http.auth.login import AdminLogin, plain_http_refusal
from chatgate.http.auth.nonces import NonceCounts, NonceUse

if TYPE_CHECKING:
    from chatgate.http.auth.admins import AdminAccounts

__all__ = ["AdminStoreSecrets", "DigestMethod", "DigestSecrets"]

log = logging.getLogger("chatgate.http.auth")

#: nonce secret's name in the installation secrets (`db.secrets`)
NONCE_SECRET = "admin-digest-nonce"
#: a nonce minted this far in the future (clock skew between processes) is still ours
_SKEW = 60


class DigestSecrets(Protocol):
    async def secret(self, username: str, algorithm: str) -> tuple[str, frozenset[str]] | None:
        """(HA1 in hex, groups) of `username` for `algorithm` under the method's realm."""
        ...


class AdminStoreSecrets:
    """HA1 of the administrators chatgate keeps (`AdminAccounts.digest_secret`)."""

    def __init__(self, accounts: AdminAccounts) -> None:
        self.accounts = accounts

    async def secret(self, username: str, algorithm: str) -> tuple[str, frozenset[str]] | None:
        found = await self.accounts.digest_secret(username, algorithm)
        if found is None:
            return None
        ha1, row = found
        return ha1, frozenset(row.groups)


class DigestMethod:
    """One Digest method; `name` is what the gate counts and principals carry."""

    schemes = frozenset({"digest"})

    def __init__(
        self,
        name: str,
        *,
        realm: str,
        algorithms: Sequence[str],
        codec: NonceCodec,
        counts: NonceCounts,
        lifetime: float,
        login: AdminLogin,
        secrets: DigestSecrets,
        allow_plain_http: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.realm = realm
        self.algorithms = tuple(algorithms)
        self.codec = codec
        self.counts = counts
        self.lifetime = lifetime
        self.login = login
        self.secrets = secrets
        self.allow_plain_http = allow_plain_http
        self.clock = clock

    def challenges(self, *, stale: bool = False) -> list[str]:
        nonce = self.codec.mint(self.clock())
        opaque = self.codec.opaque
        return [challenge(self.realm, a, nonce, opaque, stale=stale) for a in self.algorithms]

    async def challenge(self, request: AuthRequest) -> Sequence[str]:
        return self.challenges()

    def _refuse(self, request: AuthRequest, why: str, *, stale: bool = False) -> Refusal:
        log.info(
            "admin: %s credentials from %s refused: %s", self.name, request.address or "-", why
        )
        return Refusal(401, why, tuple(self.challenges(stale=stale)))

    def _problem(self, creds: DigestCredentials, request: AuthRequest) -> str | None:
        if creds.realm != self.realm:
            return f"realm {creds.realm!r} is not {self.realm!r}"
        if creds.algorithm not in self.algorithms:
            return f"algorithm {creds.algorithm} not offered"
        if creds.userhash:
            return "userhash is not supported"
        if creds.qop != "auth" or creds.nc is None or creds.cnonce is None:
            return "qop=auth with nc and cnonce is required"
        if creds.uri != request.target:
            return "uri is not this request's target"
        if creds.opaque is not None and not hmac.compare_digest(creds.opaque, self.codec.opaque):
            return "opaque is not ours"
        if len(creds.response) != HEX_LENGTH[creds.algorithm]:
            return "response has the wrong length"
        return None

    async def authenticate(self, request: AuthRequest) -> Principal | Refusal:
        refusal = plain_http_refusal(request, self.allow_plain_http)
        if refusal is not None:
            return refusal
        try:
            creds = parse_digest(request.authorization or "")
        except Malformed as exc:
            return self._refuse(request, f"malformed digest credentials: {exc}")
        problem = self._problem(creds, request)
        if problem is not None:
            return self._refuse(request, problem)
        return await self.check(request, creds)

    async def check(self, request: AuthRequest, creds: DigestCredentials) -> Principal | Refusal:
        """Check well-formed credentials of this realm (`remote.py` calls it in fallback)."""
        now = self.clock()
        issued = self.codec.issued_at(creds.nonce)
        if issued is None or issued > now + _SKEW:
            # Not a nonce of ours (another server's, a forged one): ask again.
            return self._refuse(request, "unknown nonce", stale=True)
        entered = self.login.enter(request, creds.username)
        if isinstance(entered, Refusal):
            return entered
        try:
            found = await self.secrets.secret(creds.username, creds.algorithm)
        except asyncio.CancelledError:
            self.login.gate.failed(entered, "not-authorized", mechanism=f"{self.name} (abandoned)")
            raise
        except Exception:
            log.exception("admin: %s: looking up %s failed", self.name, creds.username)
            self.login.gate.released(entered)
            return Refusal(503, "authentication is unavailable, try again later", retry_after=5)
        ha1 = found[0].lower() if found else "0" * HEX_LENGTH[creds.algorithm]
        assert creds.nc is not None and creds.cnonce is not None and creds.qop is not None
        expected = response(
            creds.algorithm,
            ha1,
            creds.nonce,
            creds.nc,
            creds.cnonce,
            creds.qop,
            request.method,
            creds.uri,
        )
        right = hmac.compare_digest(expected.encode(), creds.response.lower().encode())
        if found is None or not right:
            return await self.login.failed(entered, self.challenges())
        if issued + self.lifetime < now:
            self.login.rejected(entered, "stale-nonce")
            return Refusal(401, "nonce expired", tuple(self.challenges(stale=True)))
        use = await self.counts.advance(creds.nonce, issued, int(creds.nc, 16), now)
        if use is NonceUse.REPLAYED:
            self.login.rejected(entered, "replayed-nonce-count")
            log.warning(
                "admin: %s replay refused: %s from %s repeated nonce count %s",
                self.name,
                creds.username,
                request.address or "-",
                creds.nc,
            )
            return Refusal(401, "nonce count already used", tuple(self.challenges()))
        if use is NonceUse.FORGOTTEN:
            self.login.rejected(entered, "forgotten-nonce")
            return Refusal(401, "nonce expired", tuple(self.challenges(stale=True)))
        principal = Principal(creds.username, found[1], self.name)
        return self.login.succeeded(entered, request, principal)

    async def close(self) -> None:
        return None
