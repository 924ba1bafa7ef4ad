"""What every password-bearing method does around its check: refuse credentials
over plain HTTP from afar, pass the attempt through the server's login gate (the
brute-force protection XMPP logins have), hold a failure's answer.

The gate is `ServerContext.login_gate` (`auth/gate.py`): protocol
``"http-admin"``, mechanism the method's name, the claimed administrator under
`registry.ADMIN_DOMAIN` (never a served domain), the client's address.  A
refused attempt is answered 429 with `Retry-After`, unevaluated; a wrong guess
is answered after the gate's hold
(an `asyncio.sleep`: other requests go on meanwhile; the throttle's
`max_delay` bounds it).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Final

from chatgate.auth.throttle import Refuse
from chatgate.http.auth.base import AuthRequest, Principal, Refusal

if TYPE_CHECKING:
    from chatgate.auth.gate import Attempt, LoginGate

__all__ = ["PROTOCOL", "AdminLogin", "plain_http_refusal", "valid_name"]

log = logging.getLogger("chatgate.http.auth")

#: the login gate's protocol name for every admin route
PROTOCOL: Final = "http-admin"
#: the longest hold a failure's answer waits, whatever the throttle says
MAX_HOLD: Final = 30.0
_NAME = re.compile(r"[^\s:]{1,64}")


def valid_name(name: str) -> bool:
    """An administrator's name: 1 to 64 characters, no colon (Basic splits there),
    no whitespace (the password file splits there)."""
    return _NAME.fullmatch(name) is not None


def plain_http_refusal(request: AuthRequest, allow_plain_http: bool) -> Refusal | None:
    """403 for credentials sent in the clear from a client other than loopback."""
    if request.secure or allow_plain_http:
        return None
    log.warning(
        "admin: credentials over plain HTTP from %s refused (use HTTPS, or [admin]"
        " allow_plain_http)",
        request.address or "-",
    )
    return Refusal(403, "credentials over plain HTTP: use HTTPS")


class AdminLogin:
    """The gate, as one method uses it."""

    def __init__(self, gate: LoginGate, domain: str, method: str) -> None:
        self.gate = gate
        self.domain = domain
        self.method = method
        gate.know(method)

    def enter(self, request: AuthRequest, username: str | None) -> Attempt | Refusal:
        """A slot for this attempt, or the 429 to answer unevaluated."""
        name = username if username is not None and valid_name(username) else None
        entered = self.gate.enter(PROTOCOL, self.method, name, self.domain, request.address)
        if isinstance(entered, Refuse):
            log.info(
                "admin: %s login of %s from %s throttled",
                self.method,
                name or "-",
                request.address or "-",
            )
            return Refusal(429, "too many login attempts", retry_after=entered.retry_after)
        return entered

    def succeeded(self, attempt: Attempt, request: AuthRequest, principal: Principal) -> Principal:
        self.gate.succeeded(attempt, principal.name, trust=attempt.username is not None)
        log.info(
            "admin: %s authenticated with %s from %s (groups %s)",
            principal.name,
            self.method,
            request.address or "-",
            ",".join(sorted(principal.groups)) or "readOnly",
        )
        return principal

    async def failed(
        self, attempt: Attempt, challenges: Sequence[str], message: str = "wrong credentials"
    ) -> Refusal:
        """A wrong guess: counted, held, then 401 with fresh challenges."""
        hold = self.gate.failed(attempt, "not-authorized")
        if hold > 0:
            await asyncio.sleep(min(hold, MAX_HOLD))
        return Refusal(401, message, tuple(challenges))

    def rejected(self, attempt: Attempt, reason: str) -> None:
        """No guess (a stale nonce with the right response, a replay): logged, not counted."""
        self.gate.failed(attempt, reason, guess=False)

    async def check(
        self,
        request: AuthRequest,
        username: str | None,
        verify: Callable[[], Awaitable[Principal | None]],
        challenges: Callable[[], Awaitable[Sequence[str]]],
    ) -> Principal | Refusal:
        """Enter, `verify` (None: wrong), settle: a credential checked in one step."""
        entered = self.enter(request, username)
        if isinstance(entered, Refusal):
            return entered
        try:
            principal = await verify()
        except asyncio.CancelledError:
            self.gate.failed(entered, "not-authorized", mechanism=f"{self.method} (abandoned)")
            raise
        except Exception:
            log.exception("admin: %s check failed", self.method)
            self.gate.released(entered)
            return Refusal(503, "authentication is unavailable, try again later", retry_after=5)
        if principal is None:
            return await self.failed(entered, await challenges())
        return self.succeeded(entered, request, principal)
