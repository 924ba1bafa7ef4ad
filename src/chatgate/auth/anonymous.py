"""The identity source of an anonymous virtual host: no accounts, and a login rate limit.

An anonymous host (`[hosts."NAME"] anonymous = true`) has no credentials to
ask about.  Its provider offers only the `ANONYMOUS` capability, which is
what makes selection offer SASL ANONYMOUS there and nowhere else; every
question about passwords or keys answers "no such user".

Each ANONYMOUS login creates a fresh identity, free for anyone to take, so
RFC 4505 §4 asks servers to limit them.  `AnonymousLoginLimit` counts logins
per address and per host in sliding windows, with the same address grouping
and exemptions as the registration limits (an anonymous login is an account
created for one session).
"""

from __future__ import annotations

from chatgate.auth.credentials import ScramKeys
from chatgate.auth.provider import Capability
from chatgate.auth.throttle import (
    ALLOW,
    RegistrationLimiter,
    RegistrationLimits,
    RegistrationThrottle,
    ThrottleOptions,
    Verdict,
)
from chatgate.config import AnonymousLimits

__all__ = ["AnonymousLoginLimit", "AnonymousProvider"]


class AnonymousProvider:
    """The provider of an anonymous host: offers ANONYMOUS, knows no user."""

    offers = frozenset({Capability.ANONYMOUS})

    async def scram_keys(self, username: str, domain: str, hash_name: str) -> ScramKeys | None:
        return None

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        return False

    async def user_exists(self, username: str, domain: str) -> bool:
        return False


class AnonymousLoginLimit:
    """Sliding-window limits on ANONYMOUS logins of one host.

    The windows are a `RegistrationLimiter` (`check`, then `registered`) with the
    host's numbers (`options`): the in-process `RegistrationThrottle` unless
    `windows` is given; a cluster node puts its shared windows in `windows`
    (`cluster/auth_state.py`), so the limits count every node's logins."""

    def __init__(
        self,
        limits: AnonymousLimits,
        throttle: ThrottleOptions,
        windows: RegistrationLimiter | None = None,
    ) -> None:
        #: the registration throttle's options with this host's numbers
        self.options = throttle.model_copy(
            update={
                "registration": RegistrationLimits(
                    per_address=limits.per_address,
                    address_period=limits.period,
                    total=limits.total,
                    total_period=limits.period,
                )
            }
        )
        self.windows: RegistrationLimiter = (
            RegistrationThrottle(self.options) if windows is None else windows
        )

    def admit(self, address: str | None, now: float) -> bool:
        """Count one login from `address` if the limits allow it; False when they do not."""
        verdict: Verdict = self.windows.check(address, now)
        if verdict is not ALLOW:
            return False
        self.windows.registered(address, now)
        return True

    def prune(self, now: float) -> int:
        return self.windows.prune(now)
