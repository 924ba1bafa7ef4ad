"""What the throttles answer and the interfaces a shared store would implement.

This module owns the vocabulary of brute-force protection and registration
limits: verdicts (`Allow`, `Refuse`), what a counted failure changed
(`FailureRecord`), the statistics, and the two protocols the server talks to
(`LoginThrottle`, `RegistrationLimiter`).  The in-process implementations are
`login.AuthThrottle` and `registration.RegistrationThrottle`; the cluster's
(`chatgate.cluster.throttle`, over Redis, shared by every node) implements the
same protocols, with the same meaning of every call.  Nothing here awaits,
reads the clock or keeps state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from chatgate.vocabulary.errors import SaslFailureCondition

__all__ = [
    "ALLOW",
    "Allow",
    "AuthThrottleStats",
    "FailureRecord",
    "LoginThrottle",
    "Refuse",
    "RegistrationLimiter",
    "RegistrationStats",
    "ThrottleEvent",
    "ThrottleReason",
    "Verdict",
    "backoff_delay",
    "counts_as_guess",
    "throttle_account",
]


class ThrottleReason(enum.Enum):
    BUSY = "busy"  # `max_in_flight` attempts from this address are evaluated or held
    BUSY_ACCOUNT = "busy-account"  # ... `max_in_flight_per_account` against this account
    REGISTRATION_ADDRESS = "registration-address"  # `per_address` accounts created
    REGISTRATION_ATTEMPTS = "registration-attempts"  # `attempts_per_address` reached
    REGISTRATION_TOTAL = "registration-total"  # `total` reached


@dataclass(frozen=True, slots=True)
class Allow:
    """Go ahead now."""


ALLOW = Allow()


@dataclass(frozen=True, slots=True)
class Refuse:
    """Do not evaluate this attempt: answer temporary-auth-failure (or, for registration,
    a `wait` error); a slot frees, or the limit lifts, in `retry_after` seconds."""

    reason: ThrottleReason
    retry_after: float


Verdict = Allow | Refuse


class ThrottleEvent(enum.Enum):
    """What a failure changed: worth one log line each, not one per failure."""

    ADDRESS_THROTTLED = "address-throttled"  # this address's failures are now held
    ADDRESS_ESCALATED = "address-escalated"  # ... for longer than before
    ACCOUNT_THROTTLED = "account-throttled"  # failures against the account are held
    ACCOUNT_ESCALATED = "account-escalated"


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """What `LoginThrottle.failed` counted, and how long to hold the failure's answer."""

    #: False when the throttle is off or the address is exempt (nothing was counted)
    counted: bool
    address_failures: int = 0
    #: 0 when no username was claimed
    account_failures: int = 0
    #: seconds to hold this failure's answer; its slot stays taken as long
    delay: float = 0.0
    events: tuple[ThrottleEvent, ...] = ()

    @property
    def should_log(self) -> bool:
        """True once per escalation (holding started, the hold grew)."""
        return bool(self.events)


@dataclass(slots=True)
class AuthThrottleStats:
    """Counters for metrics; they only grow."""

    failures: int = 0  # failed() calls, exempt ones included
    delays: int = 0  # failures whose answer was held
    delay_seconds: float = 0.0  # their total
    refusals: int = 0  # Refuse verdicts (BUSY, BUSY_ACCOUNT)
    abandoned: int = 0  # attempts never resolved, counted as failures when their slot expired
    evictions: int = 0  # entries forgotten because a table was full


@dataclass(slots=True)
class RegistrationStats:
    registrations: int = 0  # registered() calls
    attempts: int = 0  # attempts admitted by attempt()
    refusals: int = 0  # Refuse verdicts


class LoginThrottle(Protocol):
    """Brute-force protection for logins (SASL, XEP-0078), per address and per account.

    The calls of one attempt: `check` before its credentials are evaluated (the
    username is known), then exactly one of `failed` (a wrong guess: hold the
    answer `FailureRecord.delay` seconds), `succeeded` or `released` (it ended
    without a verdict: the provider was down, the client aborted before a
    guess).  An allowed attempt holds a slot from `check` until `succeeded`,
    `released`, or its failure's hold ends.  `parked` marks an attempt that waits
    for the client (SCRAM after its challenge), which `client_left` frees
    uncounted; a slot never resolved otherwise counts as a failure when it
    expires.  `address` is the transport's remote address (None:
    unknown), `account` the bare JID the client claims (`throttle_account`);
    `now` is monotonic seconds.  Implementations must never ask whether the
    account exists.
    """

    @property
    def stats(self) -> AuthThrottleStats: ...

    def check(self, address: str | None, account: str | None, now: float) -> Verdict: ...

    def failed(
        self, address: str | None, account: str | None, now: float, *, reserved: bool = True
    ) -> FailureRecord: ...

    def succeeded(
        self, address: str | None, account: str, now: float, *, reserved: bool = True
    ) -> None: ...

    def released(self, address: str | None, account: str | None, now: float) -> None: ...

    def parked(self, address: str | None, account: str | None, now: float) -> None: ...

    def client_left(self, address: str | None, account: str | None, now: float) -> bool: ...

    def prune(self, now: float) -> int: ...


class RegistrationLimiter(Protocol):
    """Rate limits on creating accounts (XEP-0077), per address and in total.

    `attempt` admits and counts one registration attempt, whatever its outcome
    (a taken name, a refused password), then `registered` counts the account
    when one was created.  `check` only asks whether an account may be created
    (ANONYMOUS logins use `check` + `registered` as their own windows)."""

    stats: RegistrationStats

    def check(self, address: str | None, now: float) -> Verdict: ...

    def attempt(self, address: str | None, now: float) -> Verdict: ...

    def registered(self, address: str | None, now: float) -> None: ...

    def prune(self, now: float) -> int: ...


def backoff_delay(failures: int, free_failures: int, base_delay: float, max_delay: float) -> float:
    """``min(max_delay, base_delay * 2 ** (failures - free_failures))``, 0 while
    ``failures < free_failures``; safe for any count (the exponent is clamped)."""
    if failures < free_failures:
        return 0.0
    return min(max_delay, base_delay * 2.0 ** min(failures - free_failures, 64))


_GUESS_CONDITIONS = frozenset(
    {
        SaslFailureCondition.NOT_AUTHORIZED,
        SaslFailureCondition.INVALID_AUTHZID,
        SaslFailureCondition.ACCOUNT_DISABLED,
        SaslFailureCondition.CREDENTIALS_EXPIRED,
    }
)


def counts_as_guess(condition: SaslFailureCondition) -> bool:
    """Whether a SASL failure is a credential guess that `LoginThrottle.failed` should count.

    Protocol errors (malformed-request, invalid-mechanism, incorrect-encoding, aborted,
    encryption-required, mechanism-too-weak) reveal nothing about a password, and
    temporary-auth-failure is the server's own doing, including this throttle's
    refusals: counting those would feed the counters with their own refusals."""
    return condition in _GUESS_CONDITIONS


def throttle_account(username: str | None, domain: str) -> str | None:
    """The name an account's failures are counted under: its bare JID, so that guesses
    at alice on one virtual host do not slow down alice on another."""
    return None if username is None else f"{username}@{domain}"
