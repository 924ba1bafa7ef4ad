"""`none`: no authentication at all, as Wowza's `AuthenticationMethod none`.

Only with `[admin] allow_none = true` and an HTTP listener bound to loopback
(`registry.py` refuses anything else at start, and logs a loud warning when it
is on): every request is the administrator "anonymous" (group `admin`), if its
`Host` names this machine (another site's name pointed at 127.0.0.1 is refused)."""

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
        if not request.local_host:
            # DNS rebinding: another site's page in a browser on this machine, its
            # name pointed at 127.0.0.1, would otherwise be the administrator
            return Refusal(403, "authentication is off here: open it as localhost or 127.0.0.1")
        return ANONYMOUS

    async def close(self) -> None:
        return None
