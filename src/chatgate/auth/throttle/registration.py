"""The in-process `RegistrationLimiter`: sliding windows on account creation.

Per address, two windows of ``address_period``: the attempts an address makes
(``attempts_per_address``, every attempt counts, whatever its outcome: a client
trying taken names costs key derivation and a database write each time) and the
accounts it creates (``per_address``); and one window of ``total_period`` for
the accounts the whole server creates (``total``).  The same exemptions and IPv6
prefix as logins apply; ``enabled`` does not (an operator who turns login
throttling off for a benchmark still wants this).  Never awaits, never reads the
clock, never logs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from chatgate.auth.throttle.base import (
    ALLOW,
    Refuse,
    RegistrationStats,
    ThrottleReason,
    Verdict,
)
from chatgate.auth.throttle.options import ThrottleOptions
from chatgate.auth.throttle.tables import expiring_table, is_exempt, live, locate, prune
from chatgate.lru import LruCache

__all__ = ["RegistrationThrottle"]


@dataclass(slots=True)
class _Registrations:
    times: deque[float]  # accounts created
    attempts: deque[float] | None = None  # attempts admitted (made when first needed)
    expires: float = 0.0


#: What a `_Registrations` record weighs (tracemalloc, CPython 3.11): its deque of
#: accounts created (~620 bytes however short); one of attempts, once made, as much.
_REGISTRATIONS_BYTES = 820


class RegistrationThrottle:
    """Sliding-window limits on account creation: per address and in total.

    Call `attempt` before evaluating a registration and `registered` after an
    account was created."""

    def __init__(self, options: ThrottleOptions | None = None) -> None:
        self.options = options if options is not None else ThrottleOptions()
        self._addresses: LruCache[str, _Registrations] = expiring_table(
            self.options.max_entries, _REGISTRATIONS_BYTES
        )
        limits = self.options.registration
        self._total: deque[float] = deque(maxlen=limits.total or None)
        self.stats = RegistrationStats()

    def sizes(self) -> dict[str, int]:
        return {"addresses": len(self._addresses)}

    def check(self, address: str | None, now: float) -> Verdict:
        """May `address` create an account now? `Refuse` carries when it may."""
        where = locate(address, self.options.ipv6_prefix)
        if is_exempt(self.options, where):
            return ALLOW
        limits = self.options.registration
        if limits.per_address:
            entry = live(self._addresses, where.key, now)
            if entry is not None:
                _expire(entry.times, now - limits.address_period)
                if len(entry.times) >= limits.per_address:
                    self.stats.refusals += 1
                    return Refuse(
                        ThrottleReason.REGISTRATION_ADDRESS,
                        entry.times[0] + limits.address_period - now,
                    )
        if limits.total:
            _expire(self._total, now - limits.total_period)
            if len(self._total) >= limits.total:
                self.stats.refusals += 1
                return Refuse(
                    ThrottleReason.REGISTRATION_TOTAL, self._total[0] + limits.total_period - now
                )
        return ALLOW

    def attempt(self, address: str | None, now: float) -> Verdict:
        """Admit and count one registration attempt from `address` (its outcome does not
        matter); `Refuse` when the address made `attempts_per_address` already or an
        account could not be created now anyway (`check`).  Refused attempts are not
        counted: they cost nothing."""
        where = locate(address, self.options.ipv6_prefix)
        if is_exempt(self.options, where):
            return ALLOW
        limits = self.options.registration
        period = limits.address_period
        entry = live(self._addresses, where.key, now)
        if limits.attempts_per_address and entry is not None and entry.attempts:
            _expire(entry.attempts, now - period)
            if len(entry.attempts) >= limits.attempts_per_address:
                self.stats.refusals += 1
                return Refuse(
                    ThrottleReason.REGISTRATION_ATTEMPTS, entry.attempts[0] + period - now
                )
        verdict = self.check(address, now)
        if verdict is not ALLOW:
            return verdict
        self.stats.attempts += 1
        if limits.attempts_per_address:
            entry = self._entry(where.key, now)
            if entry.attempts is None:
                entry.attempts = deque(maxlen=limits.attempts_per_address)
            entry.attempts.append(now)
        return ALLOW

    def registered(self, address: str | None, now: float) -> None:
        """Count an account created from `address`."""
        self.stats.registrations += 1
        where = locate(address, self.options.ipv6_prefix)
        if is_exempt(self.options, where):
            return
        limits = self.options.registration
        if limits.total:
            self._total.append(now)
        if limits.per_address:
            self._entry(where.key, now).times.append(now)

    def place(self, address: str | None) -> str | None:
        """The key `address`'s registrations are counted under; None when exempt."""
        where = locate(address, self.options.ipv6_prefix)
        return None if is_exempt(self.options, where) else where.key

    def merge(
        self, key: str, now: float, *, attempts: int = 0, registrations: int = 0, total: int = 0
    ) -> None:
        """Take in the shared totals of the address `key` (a `place`) and of the whole
        cluster, after an attempt or a registration made elsewhere: each window holds
        at least that many entries, the missing ones counted as of `now` (never fewer:
        this table may know entries the shared store has not seen yet).  Not on a
        registration's path."""
        limits = self.options.registration
        if limits.total:
            _expire(self._total, now - limits.total_period)
            for _ in range(min(total, limits.total) - len(self._total)):
                self._total.append(now)
        if not (attempts and limits.attempts_per_address) and not (
            registrations and limits.per_address
        ):
            return
        entry = self._entry(key, now)
        _expire(entry.times, now - limits.address_period)
        if limits.per_address:
            for _ in range(min(registrations, limits.per_address) - len(entry.times)):
                entry.times.append(now)
        if limits.attempts_per_address and attempts:
            if entry.attempts is None:
                entry.attempts = deque(maxlen=limits.attempts_per_address)
            _expire(entry.attempts, now - limits.address_period)
            for _ in range(min(attempts, limits.attempts_per_address) - len(entry.attempts)):
                entry.attempts.append(now)

    def prune(self, now: float) -> int:
        return prune(self._addresses, now)

    def _entry(self, key: str, now: float) -> _Registrations:
        limits = self.options.registration
        entry = live(self._addresses, key, now)
        if entry is None:
            entry = _Registrations(deque(maxlen=limits.per_address or None))
            self._addresses.put(key, entry)
        entry.expires = now + limits.address_period
        return entry


def _expire(times: deque[float], before: float) -> None:
    while times and times[0] <= before:
        times.popleft()
