"""`bearer`: RFC 6750 bearer tokens (`tokens.py`) for automation: scoped to groups,
expiring, stored hashed.  A wrong token is a guess like a wrong password: it goes
through the login gate, keyed by the client's address (a token names nobody
before it is checked)."""

from __future__ import annotations

from collections.abc import Sequence

from chatgate.http.auth.base import AuthRequest, Principal, Refusal
from chatgate.http.auth.login import AdminLogin, plain_http_refusal
from chatgate.http.auth.tokens import BearerTokens

__all__ = ["BearerMethod"]


class BearerMethod:
    name = "bearer"
    schemes = frozenset({"bearer"})

    def __init__(
        self, tokens: BearerTokens, login: AdminLogin, *, realm: str, allow_plain_http: bool
    ) -> None:
        self.tokens = tokens
        self.login = login
        self.allow_plain_http = allow_plain_http
        escaped = realm.replace("\\", "\\\\").replace('"', '\\"')
        self._challenge = (f'Bearer realm="{escaped}"',)
        self._invalid = (f'Bearer realm="{escaped}", error="invalid_token"',)

    async def challenge(self, request: AuthRequest) -> Sequence[str]:
        return self._challenge

    async def authenticate(self, request: AuthRequest) -> Principal | Refusal:
        refusal = plain_http_refusal(request, self.allow_plain_http)
        if refusal is not None:
            return refusal
        _, _, token = (request.authorization or "").strip().partition(" ")

        async def verify() -> Principal | None:
            return await self.tokens.check(token.strip())

        async def challenges() -> Sequence[str]:
            return self._invalid

        return await self.login.check(request, None, verify, challenges)

    async def close(self) -> None:
        return None
