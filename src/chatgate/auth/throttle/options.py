"""`[auth.throttle]`: the option models of brute-force protection and registration limits.

Only validation lives here (pydantic models with a docstring per field, which
`docs/configuration.md` lists); the cores in `login.py` and `registration.py`
read them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, model_validator

__all__ = ["AccountLimits", "AddressLimits", "RegistrationLimits", "ThrottleOptions"]

Seconds = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]
Slots = Annotated[int, Field(ge=1, le=10_000)]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _check_delays(base_delay: float, max_delay: float) -> None:
    if max_delay < base_delay:
        raise ValueError("max_delay must not be smaller than base_delay")


class AddressLimits(_Options):
    """`[auth.throttle.address]`: failed logins from one client address.

    Credentials are evaluated first and only failures are held back, so a right
    password from an address under attack is answered at once; the slots bound
    how many guesses that address can have evaluated per minute."""

    free_failures: Count = 5
    """Failed logins from one address, within `window`, answered without delay (the
    figure of Prosody's mod_limit_auth example: 5 per period)."""
    base_delay: Seconds = 1.0
    """How long the first failure past `free_failures` is held before it is answered;
    the hold doubles with each further failure."""
    max_delay: Seconds = 20.0
    """Longest hold of a failure (and of the slot it takes). Keep it below `[auth]
    auth_timeout` (30 s), or the connection times out before its answer."""
    window: Seconds = 600.0
    """Seconds without a failure after which an address's failures are forgotten
    (fail2ban's `findtime`)."""
    max_in_flight: Slots = 8
    """Login attempts from one address evaluated or held at once: an attempt takes a
    slot while its credentials are evaluated, a failure keeps it until its answer is
    sent, a success frees it at once. More are refused unevaluated
    (`temporary-auth-failure`). Attempts on an account that logged in from this address
    before (`[auth.throttle.account] trusted_for`) have their own slots."""
    max_in_flight_per_account: Slots = 2
    """Login attempts from one address against one account evaluated or held at once
    (trusted or not); more are refused unevaluated (`temporary-auth-failure`)."""

    @model_validator(mode="after")
    def _limits(self) -> AddressLimits:
        _check_delays(self.base_delay, self.max_delay)
        if self.max_in_flight_per_account > self.max_in_flight:
            raise ValueError("max_in_flight_per_account must not exceed max_in_flight")
        return self


class AccountLimits(_Options):
    """`[auth.throttle.account]`: failed logins against one username, from all addresses.

    Soft on purpose: it holds failures longer, never refuses, so nobody can lock an
    owner out."""

    free_failures: Count = 10
    """Failed logins against one account, within `window`, before its failures are held
    (larger than the address's: the owner's own typos count here too)."""
    base_delay: Seconds = 1.0
    """Hold of the first failure past `free_failures`; it doubles with each further one."""
    max_delay: Seconds = 20.0
    """Longest hold an account's failures get. Keep it below `[auth] auth_timeout`."""
    window: Seconds = 3600.0
    """Seconds without a failure after which an account's failures are forgotten."""
    trusted_for: Seconds = 30 * 86400.0
    """Seconds after a successful login during which that address is spared the account's
    hold and has its own slots (its address holds still apply; `[auth.throttle.address]
    free_failures` failures from that address against that account end the trust)."""

    @model_validator(mode="after")
    def _delays(self) -> AccountLimits:
        _check_delays(self.base_delay, self.max_delay)
        return self


class RegistrationLimits(_Options):
    """`[auth.throttle.registration]`: new accounts (XEP-0077 in-band registration)."""

    per_address: Count = 5
    """Accounts one address may create per `address_period` (ejabberd's
    `registration_timeout` allows one per 10 minutes). 0: no per-address limit."""
    attempts_per_address: Count = 20
    """Registration attempts one address may make per `address_period`, whatever their
    outcome (a taken name, a refused password, an account created); more get
    `resource-constraint`. 0: no limit."""
    address_period: Seconds = 3600.0
    """Sliding window of `per_address` and `attempts_per_address`, in seconds."""
    total: Count = 60
    """Accounts the whole server creates per `total_period`, from all addresses together:
    caps what a botnet can do. 0: no total limit."""
    total_period: Seconds = 60.0
    """Sliding window of `total`, in seconds."""


class ThrottleOptions(_Options):
    """`[auth.throttle]`: brute-force protection and registration rate limits."""

    enabled: bool = True
    """Count failures and throttle logins. Off: every attempt is allowed (registration
    limits still apply)."""
    address: AddressLimits = AddressLimits()
    """Failures counted per client address."""
    account: AccountLimits = AccountLimits()
    """Failures counted per account, from all addresses."""
    registration: RegistrationLimits = RegistrationLimits()
    """Rate limits on creating accounts."""
    ipv6_prefix: Annotated[int, Field(ge=32, le=128)] = 64
    """IPv6 addresses are counted per prefix of this length: one host usually owns a
    whole /64 and could otherwise rotate through it."""
    exempt_loopback: bool = False
    """Never throttle 127.0.0.0/8 and ::1 (benchmarks and local tests turn this on)."""
    exempt_networks: list[IPvAnyNetwork] = []
    """Client networks never throttled nor counted, e.g. `["10.1.2.0/24"]` for a
    monitoring host. Only for networks you control."""
    max_entries: Annotated[int, Field(ge=100, le=10_000_000)] = 100_000
    """Entries kept in each table (addresses, accounts, address-account pairs, trusted
    pairs, registering addresses); the least recently used is forgotten first. About 300
    bytes an entry: some 110 MB if an attack fills the four login tables."""
