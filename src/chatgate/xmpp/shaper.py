"""Token buckets that give every connection a fair share (Prosody's mod_limits,
ejabberd's shapers).

A bucket holds up to `burst` units and refills at `rate` units per second.
`take()` always debits (the balance may go negative) and returns how long the
caller should wait before it takes more: the time the bucket needs to climb back
to zero.  The transport adapter turns that wait into a pause of reading, so a
client that sends faster than its rate is simply read more slowly: nothing is
dropped, nothing is buffered beyond what one read brought, and other connections
get the event loop in between.

Sans-I/O: the caller passes `now` (monotonic seconds); nothing here sleeps or
reads the clock.  A bucket is per connection and lives in that connection's
process, so it needs no shared store (a per-address or per-account limit would).
"""

from __future__ import annotations


class TokenBucket:
    """`rate` units per second, at most `burst` saved up; starts full."""

    __slots__ = ("_balance", "_stamp", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("a token bucket needs a positive rate and burst")
        self.rate = rate
        self.burst = burst
        self._balance = burst
        self._stamp = now

    def take(self, amount: float, now: float) -> float:
        """Debit `amount`; return the seconds to wait before taking more (0.0: none)."""
        balance = self._balance + (now - self._stamp) * self.rate
        if balance > self.burst:
            balance = self.burst
        balance -= amount
        self._balance = balance
        self._stamp = now
        if balance >= 0:
            return 0.0
        return -balance / self.rate

    @property
    def balance(self) -> float:
        """Units available at the last `take` (negative while in debt); for tests and logs."""
        return self._balance
