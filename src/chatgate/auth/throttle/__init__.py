"""Brute-force protection for logins, and rate limits for account registration.

The package is split along its seams:

* `options`: the ``[auth.throttle]`` option models;
* `base`: verdicts, records, statistics, and the two interfaces the server
  uses (`LoginThrottle`, `RegistrationLimiter`) which a shared store
  (PostgreSQL, Redis) could implement;
* `login`: `AuthThrottle`, the in-process login throttle (evaluate first, hold
  only failures, slots per address; its docstring has the theory and the
  documented guess bounds);
* `registration`: `RegistrationThrottle`, sliding windows on attempts and new
  accounts;
* `tables`: the bounded, expiring tables (`chatgate.lru.LruCache`) and the
  address and account keys.

Every core is sans-I/O: it never awaits, never reads the clock (every call takes
``now``), never logs and never touches storage.
"""

from chatgate.auth.throttle.base import (
    ALLOW,
    Allow,
    AuthThrottleStats,
    FailureRecord,
    LoginThrottle,
    Refuse,
    RegistrationLimiter,
    RegistrationStats,
    ThrottleEvent,
    ThrottleReason,
    Verdict,
    backoff_delay,
    counts_as_guess,
    throttle_account,
)
from chatgate.auth.throttle.login import AuthThrottle
from chatgate.auth.throttle.options import (
    AccountLimits,
    AddressLimits,
    RegistrationLimits,
    ThrottleOptions,
)
from chatgate.auth.throttle.registration import RegistrationThrottle

__all__ = [
    "ALLOW",
    "AccountLimits",
    "AddressLimits",
    "Allow",
    "AuthThrottle",
    "AuthThrottleStats",
    "FailureRecord",
    "LoginThrottle",
    "Refuse",
    "RegistrationLimiter",
    "RegistrationLimits",
    "RegistrationStats",
    "RegistrationThrottle",
    "ThrottleEvent",
    "ThrottleOptions",
    "ThrottleReason",
    "Verdict",
    "backoff_delay",
    "counts_as_guess",
    "throttle_account",
]
