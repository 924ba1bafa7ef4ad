"""`none`: no authentication at all, as Wowza's `AuthenticationMethod none`.

Only with `[admin] allow_none = true` and an HTTP listener bound to loopback
(`registry.py` refuses anything else at start, and logs a loud warning when it
is on): every request is the administrator "anonymous" (group `admin`)."""

from __future__ import annotations

from collections.abc import Sequence

from chatgate.http.auth.base import AuthRequest, Principal, Refusal

__all__ = ["ANONYMOUS", "NoneMethod"]

ANONYMOUS = Principal("anonymous", frozenset({"admin"}), "none")


class NoneMethod:
    name = "none"
    schemes: frozenset[str] = frozenset()

    async def challenge(self, request: AuthRequest) -> Sequence[str]:
        return ()

    async def authenticate(self, request: AuthRequest) -> Principal | Refusal:
        return ANONYMOUS

    async def close(self) -> None:
        return None
