"""Brute-force protection for logins, and rate limits for account registration.

This module owns two sans-I/O cores and their options:

* `AuthThrottle` decides, before a login attempt's credentials are evaluated,
  whether to answer it now (`Allow`), after a wait (`Delay`, a tarpit), or not
  at all (`Refuse`, answered with temporary-auth-failure); and it counts the
  attempts that failed or succeeded.
* `RegistrationThrottle` limits new accounts per client address and in total.

Both never await, never read the clock (every call takes ``now``: monotonic
seconds, e.g. ``loop.time()``), never log and never touch storage.  The caller
sleeps, answers, logs and exports the plain-int statistics.

Theory of operation
-------------------

**Per address** (IPv4 address, or IPv6 /64 by default: one host owns a whole
/64).  After ``free_failures`` failed logins within ``window`` seconds, every
further attempt from that address waits ``base_delay * 2 ** (failures -
free_failures)`` seconds, at most ``max_delay``, before it is answered; the
counter is forgotten ``window`` seconds after the last failure.  After
``ban_after`` failures the address is refused outright for ``ban_duration``
(ejabberd's mod_fail2ban: 20 failures, one hour).  Two details make the
numbers hold against a client that does not play along:

* Concurrency.  Opening many connections at once must not multiply the free
  budget, so `check` reserves a slot for each attempt it lets through and
  counts reservations like failures until `failed`/`succeeded` resolves them
  (or ``attempt_ttl`` passes: the connection was dropped mid-attempt).  Once
  delays apply, attempts from one address are answered one after the other,
  each ``delay`` after the previous one; an attempt that would wait longer than
  ``max_delay`` in that queue is refused (`ThrottleReason.BUSY`) instead of
  holding a connection open.
* No timing oracle.  The wait comes *before* the credentials are evaluated, so
  a throttled address cannot tell a right guess from a wrong one by how soon
  the answer comes (a server that delayed only failures would let a client
  with many connections read "no answer within 100 ms" as "wrong").  A clean
  address gets `Allow` and is never slowed, success or failure.

**Per account** (failures against one username from all addresses together:
a distributed guess).  Locking an account out is a denial-of-service tool:
anyone who knows a username could keep its owner out for as long as they
keep guessing.  So the
account-wide counter is soft: past its own, larger ``free_failures`` it adds a
delay (exponential, capped), never a refusal, and it spares addresses the owner
has logged in from within ``trusted_for`` (OWASP's "device cookie" idea, keyed
by address).  The owner on a known address logs in at full speed; the owner on a
new address is slowed by at most ``max_delay`` but gets in; the attacker pays
the delay on every guess.

**Success forgives only its own failures.**  `succeeded(address, user)`
subtracts the failures that this address made against this account from both
counters (the owner's typos) and marks the pair trusted.  It does not reset the
address: otherwise an attacker holding one valid account could interleave
logins to it with guesses against another and never be throttled.

**No account enumeration.**  The throttle never learns whether a username
exists: unknown and existing usernames are counted, delayed and refused in
exactly the same way.  (Equal *answers* and similar timing for unknown users
are the mechanisms' and providers' job: SCRAM's derived salts, a dummy hash in
password checks.)

**Bounded memory.**  Every table is an LRU map of at most ``max_entries``
entries; the least recently touched entry is evicted first (an attacker's own
entry is touched on each attempt, so rotating usernames or addresses evicts
idle entries, not the attacker's).  Usernames longer than 64 characters are
stored as a 128-bit hash, so entries are small however long the claimed name.
`prune` drops expired entries from the old end, for a periodic timer.

Known limit: per-address counting punishes everyone behind one address (a
carrier-grade NAT) for one attacker's failures.  Trusted pairs are spared the
account delay but not the address's delays or ban; operators with such users
may raise ``free_failures`` or set ``ban_after = 0``.
"""

from __future__ import annotations

import bisect
import enum
import functools
import hashlib
import ipaddress
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Annotated, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, model_validator

from chatgate.xmpp.errors import SaslFailureCondition

__all__ = [
    "ALLOW",
    "AccountLimits",
    "AddressLimits",
    "Allow",
    "AuthThrottle",
    "AuthThrottleStats",
    "Delay",
    "FailureRecord",
    "Refuse",
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

Seconds = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _check_delays(base_delay: float, max_delay: float) -> None:
    if max_delay < base_delay:
        raise ValueError("max_delay must not be smaller than base_delay")


# ---------------------------------------------------------------- options


class AddressLimits(_Options):
    """`[auth.throttle.address]`: failed logins from one client address."""

    free_failures: Count = 5
    """Failed logins from one address, within `window`, before its attempts are delayed
    (the figure of Prosody's mod_limit_auth example: 5 per period)."""
    base_delay: Seconds = 1.0
    """Delay of the first throttled attempt; it doubles with each further failure."""
    max_delay: Seconds = 20.0
    """Longest delay, and the longest an attempt may queue behind others from the same
    address before it is refused. Keep it below `[auth] auth_timeout` (30 s)."""
    window: Seconds = 600.0
    """Seconds without a failure after which an address's failures are forgotten
    (fail2ban's `findtime`)."""
    ban_after: Count = 20
    """Failures within `window` after which the address is refused for `ban_duration`
    (ejabberd's mod_fail2ban: 20). 0: never ban, only delay."""
    ban_duration: Seconds = 3600.0
    """Seconds a banned address is refused (ejabberd's mod_fail2ban: one hour)."""

    @model_validator(mode="after")
    def _delays(self) -> AddressLimits:
        _check_delays(self.base_delay, self.max_delay)
        return self


class AccountLimits(_Options):
    """`[auth.throttle.account]`: failed logins against one username, from all addresses.

    Soft on purpose: it delays, never refuses, so nobody can lock an owner out."""

    free_failures: Count = 10
    """Failed logins against one account, within `window`, before attempts on it are
    delayed (larger than the address's: the owner's own typos count here too)."""
    base_delay: Seconds = 1.0
    """Delay of the first throttled attempt; it doubles with each further failure."""
    max_delay: Seconds = 20.0
    """Longest delay an account's attempts get. Keep it below `[auth] auth_timeout`."""
    window: Seconds = 3600.0
    """Seconds without a failure after which an account's failures are forgotten."""
    trusted_for: Seconds = 30 * 86400.0
    """Seconds after a successful login during which that address is spared the account's
    delay (its own address delays still apply)."""

    @model_validator(mode="after")
    def _delays(self) -> AccountLimits:
        _check_delays(self.base_delay, self.max_delay)
        return self


class RegistrationLimits(_Options):
    """`[auth.throttle.registration]`: new accounts (XEP-0077 in-band registration)."""

    per_address: Count = 5
    """Accounts one address may create per `address_period` (ejabberd's
    `registration_timeout` allows one per 10 minutes). 0: no per-address limit."""
    address_period: Seconds = 3600.0
    """Sliding window of `per_address`, in seconds."""
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


# ---------------------------------------------------------------- verdicts and records


class ThrottleReason(enum.Enum):
    ADDRESS = "address"  # too many failures from this address
    ACCOUNT = "account"  # too many failures against this account
    BANNED = "banned"  # this address passed `ban_after`
    BUSY = "busy"  # attempts from this address queue longer than `max_delay`
    REGISTRATION_ADDRESS = "registration-address"  # `per_address` reached
    REGISTRATION_TOTAL = "registration-total"  # `total` reached


@dataclass(frozen=True, slots=True)
class Allow:
    """Go ahead now."""


ALLOW = Allow()


@dataclass(frozen=True, slots=True)
class Delay:
    """Evaluate and answer this attempt `seconds` from now (a tarpit: to the client it
    looks like a slow server)."""

    seconds: float
    reason: ThrottleReason


@dataclass(frozen=True, slots=True)
class Refuse:
    """Do not evaluate this attempt: answer temporary-auth-failure (or, for registration,
    a `wait` error); the limit lifts in `retry_after` seconds."""

    reason: ThrottleReason
    retry_after: float


Verdict = Allow | Delay | Refuse


class ThrottleEvent(enum.Enum):
    """What a failure changed: worth one log line each, not one per failure."""

    ADDRESS_THROTTLED = "address-throttled"  # the address's next attempt is delayed
    ADDRESS_ESCALATED = "address-escalated"  # ... by longer than before
    ADDRESS_BANNED = "address-banned"
    ACCOUNT_THROTTLED = "account-throttled"  # attempts on the account are delayed
    ACCOUNT_ESCALATED = "account-escalated"


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """What `AuthThrottle.failed` counted."""

    #: False when the throttle is off or the address is exempt (nothing was counted)
    counted: bool
    address_failures: int = 0
    #: 0 when no username was claimed
    account_failures: int = 0
    #: the delay this address's next attempt against this account would get
    delay: float = 0.0
    #: set when this failure banned the address
    banned_until: float | None = None
    events: tuple[ThrottleEvent, ...] = ()

    @property
    def should_log(self) -> bool:
        """True once per escalation (throttling started, delay grew, ban)."""
        return bool(self.events)


@dataclass(slots=True)
class AuthThrottleStats:
    """Counters for metrics; they only grow."""

    failures: int = 0  # failed() calls, exempt ones included
    delays: int = 0  # Delay verdicts
    delay_seconds: float = 0.0  # their total
    refusals: int = 0  # Refuse verdicts (bans and BUSY)
    bans: int = 0  # addresses banned
    evictions: int = 0  # entries forgotten because a table was full


@dataclass(slots=True)
class RegistrationStats:
    registrations: int = 0  # registered() calls
    refusals: int = 0  # Refuse verdicts


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
    """Whether a SASL failure is a credential guess that `AuthThrottle.failed` should count.

    Protocol errors (malformed-request, invalid-mechanism, incorrect-encoding, aborted,
    encryption-required, mechanism-too-weak) reveal nothing about a password, and
    temporary-auth-failure is the server's own doing, including this throttle's
    refusals: counting those would feed a ban with its own refusals."""
    return condition in _GUESS_CONDITIONS


# ---------------------------------------------------------------- bounded tables


class _Expiring(Protocol):
    expires: float


K = TypeVar("K")
V = TypeVar("V", bound=_Expiring)


class _Lru(Generic[K, V]):
    """An insertion/touch-ordered map of at most `limit` entries; values carry `expires`."""

    __slots__ = ("_data", "_limit", "evicted")

    def __init__(self, limit: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._limit = limit
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._data)

    def live(self, key: K, now: float) -> V | None:
        """The entry, touched; None (and dropped) when it has expired."""
        value = self._data.get(key)
        if value is None:
            return None
        if value.expires <= now:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._limit:
            self._data.popitem(last=False)
            self.evicted += 1

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def prune(self, now: float) -> int:
        """Drop expired entries from the least recently touched end; stops at the first
        live one (best effort: a long ban can shelter entries touched before it)."""
        dropped = 0
        data = self._data
        while data:
            key, value = next(iter(data.items()))
            if value.expires > now:
                break
            del data[key]
            dropped += 1
        return dropped


@dataclass(slots=True)
class _AddressState:
    failures: int = 0
    last_failure: float = 0.0
    level: float = 0.0  # delay announced for the next attempt (escalation events)
    banned_until: float = 0.0
    next_slot: float = 0.0  # when the last queued throttled attempt is answered
    #: expiry times of attempts let through and not yet resolved, oldest first (a short
    #: list: an empty deque costs 600 bytes, times `max_entries`)
    pending: list[float] = field(default_factory=list)
    expires: float = 0.0


@dataclass(slots=True)
class _AccountState:
    failures: int = 0
    last_failure: float = 0.0
    level: float = 0.0
    expires: float = 0.0


@dataclass(slots=True)
class _PairState:
    failures: int = 0
    expires: float = 0.0


@dataclass(slots=True)
class _Trust:
    expires: float


@dataclass(slots=True)
class _Registrations:
    times: deque[float]
    expires: float = 0.0


# ---------------------------------------------------------------- addresses


@dataclass(frozen=True, slots=True)
class _Where:
    key: str  # what counters are keyed by
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None


@functools.lru_cache(maxsize=8192)
def _locate(address: str | None, ipv6_prefix: int) -> _Where:
    """Normalise a transport's address: IPv4-mapped IPv6 to IPv4, IPv6 to its prefix."""
    if not address:
        return _Where("unknown", None)
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return _Where(address[:64], None)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        else:
            ip = ipaddress.IPv6Address(ip.packed)  # drop any %scope
            net = ipaddress.IPv6Network((ip, ipv6_prefix), strict=False)
            return _Where(str(net), ip)
    return _Where(str(ip), ip)


def throttle_account(username: str | None, domain: str) -> str | None:
    """The name an account's failures are counted under: its bare JID, so that guesses
    at alice on one virtual host do not slow down alice on another."""
    return None if username is None else f"{username}@{domain}"


def _account_key(username: str) -> str:
    # NUL never occurs in a prepared localpart, so hashed keys cannot collide with names.
    if len(username) <= 64:
        return username
    return (
        "\0"
        + hashlib.blake2b(username.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    )


def _exempt(options: ThrottleOptions, where: _Where) -> bool:
    ip = where.ip
    if ip is None:
        return False
    if options.exempt_loopback and ip.is_loopback:
        return True
    return any(ip in net for net in options.exempt_networks)


# ---------------------------------------------------------------- the login core


class AuthThrottle:
    """Per-address and per-account failure counting with exponential backoff.

    Call `check` when an attempt's credentials are about to be evaluated (the
    username is known), then exactly one of `failed` or `succeeded` for attempts
    that were not refused.  ``attempt_ttl`` is the longest an attempt can stay
    unresolved: pass `[auth] auth_timeout`, after which an unauthenticated
    connection is closed.  A reservation older than that is dropped.
    """

    def __init__(self, options: ThrottleOptions | None = None, attempt_ttl: float = 60.0) -> None:
        if attempt_ttl <= 0:
            raise ValueError("attempt_ttl must be positive")
        self.options = options if options is not None else ThrottleOptions()
        self.attempt_ttl = attempt_ttl
        limit = self.options.max_entries
        self._addresses: _Lru[str, _AddressState] = _Lru(limit)
        self._accounts: _Lru[str, _AccountState] = _Lru(limit)
        self._pairs: _Lru[tuple[str, str], _PairState] = _Lru(limit)
        self._trusted: _Lru[tuple[str, str], _Trust] = _Lru(limit)
        self._stats = AuthThrottleStats()
        # Failures are kept as long as either counter may need them.
        self._pair_ttl = max(self.options.address.window, self.options.account.window)
        # Reservations beyond the free budget plus the longest possible queue (attempts
        # queue at least `base_delay` apart, for at most `max_delay`) change nothing.
        a = self.options.address
        self._max_pending = a.free_failures + int(a.max_delay / a.base_delay) + 2

    # ------------------------------------------------------------ queries

    @property
    def stats(self) -> AuthThrottleStats:
        self._stats.evictions = (
            self._addresses.evicted
            + self._accounts.evicted
            + self._pairs.evicted
            + self._trusted.evicted
        )
        return self._stats

    def sizes(self) -> dict[str, int]:
        """Entries per table, for metrics and memory tests."""
        return {
            "addresses": len(self._addresses),
            "accounts": len(self._accounts),
            "pairs": len(self._pairs),
            "trusted": len(self._trusted),
        }

    # ------------------------------------------------------------ the three calls

    def _counted(self, address: str | None) -> _Where | None:
        """Where attempts from `address` are counted; None when protection is off or
        the address is exempt (then nothing is checked or counted for it)."""
        opts = self.options
        if not opts.enabled:
            return None
        where = _locate(address, opts.ipv6_prefix)
        return None if _exempt(opts, where) else where

    def check(self, address: str | None, username: str | None, now: float) -> Verdict:
        """May an attempt from `address` claiming `username` be evaluated now?

        `address` is the transport's remote address (None when unknown: all such
        connections share one counter); `username` is the prepared localpart the
        client claims, or None (ANONYMOUS).  Allowed and delayed attempts reserve a
        slot until `failed`/`succeeded` is called for them."""
        opts = self.options
        where = self._counted(address)
        if where is None:
            return ALLOW
        limits = opts.address
        state = self._live_address(where.key, now)
        wait = 0.0
        reason = ThrottleReason.ADDRESS
        queued = False
        if state is not None:
            if state.banned_until > now:
                self._stats.refusals += 1
                return Refuse(ThrottleReason.BANNED, state.banned_until - now)
            pending = state.pending
            if pending and pending[0] <= now:
                del pending[: bisect.bisect_right(pending, now)]
            # Attempts still in flight count as possible failures only once the
            # address has failed at all: parallel guessing cannot outrun the counter,
            # while many good logins at once from one address (a NAT, a gateway)
            # are never slowed down.
            in_flight = len(pending) if state.failures else 0
            delay = backoff_delay(
                state.failures + in_flight,
                limits.free_failures,
                limits.base_delay,
                limits.max_delay,
            )
            if delay > 0:
                # Throttled: one attempt at a time, `delay` apart.  The queue is
                # computed on its own: `now + delay - now` is not `delay` in floating
                # point, and a wait of exactly max_delay must not count as too long.
                wait = max(0.0, state.next_slot - now) + delay
                if wait > limits.max_delay + _EPSILON:
                    self._stats.refusals += 1
                    return Refuse(ThrottleReason.BUSY, wait - limits.max_delay)
                queued = True
        if username is not None:
            account_wait = self._account_delay(_account_key(username), where.key, now)
            if account_wait > wait:
                wait, reason = account_wait, ThrottleReason.ACCOUNT
        if state is None:
            state = _AddressState()
            self._addresses.put(where.key, state)
        if queued:
            state.next_slot = now + wait
        state.pending.append(now + self.attempt_ttl)  # sorted: `now` never goes back
        if len(state.pending) > self._max_pending:
            del state.pending[0]
        state.expires = max(state.expires, now + wait + self.attempt_ttl)
        if wait > 0:
            self._stats.delays += 1
            self._stats.delay_seconds += wait
            return Delay(wait, reason)
        return ALLOW

    def failed(
        self, address: str | None, username: str | None, now: float, *, reserved: bool = True
    ) -> FailureRecord:
        """Count a failed guess (see `counts_as_guess`); unknown usernames count the same.

        `reserved` says whether this attempt went through `check` (and so holds a
        slot to release); a mechanism may fail before it asks for credentials."""
        self._stats.failures += 1
        opts = self.options
        where = self._counted(address)
        if where is None:
            return FailureRecord(counted=False)
        events: list[ThrottleEvent] = []
        limits = opts.address

        state = self._live_address(where.key, now)
        if state is None:
            state = _AddressState()
            self._addresses.put(where.key, state)
        elif reserved:
            _release(state, now)
        state.failures += 1
        state.last_failure = now
        level = backoff_delay(
            state.failures, limits.free_failures, limits.base_delay, limits.max_delay
        )
        if level > state.level:
            events.append(
                ThrottleEvent.ADDRESS_THROTTLED
                if state.level == 0
                else ThrottleEvent.ADDRESS_ESCALATED
            )
        state.level = level
        banned_until = None
        if limits.ban_after and state.failures >= limits.ban_after and state.banned_until <= now:
            state.banned_until = banned_until = now + limits.ban_duration
            self._stats.bans += 1
            events.append(ThrottleEvent.ADDRESS_BANNED)
        state.expires = max(state.expires, now + limits.window, state.banned_until)

        account_failures = 0
        delay = level
        if username is not None:
            ukey = _account_key(username)
            account_failures, account_level, account_events = self._account_failed(ukey, now)
            events += account_events
            if not self._is_trusted(ukey, where.key, now):
                delay = max(delay, account_level)
            pair_key = (ukey, where.key)
            pair = self._pairs.live(pair_key, now)
            if pair is None:
                pair = _PairState()
                self._pairs.put(pair_key, pair)
            pair.failures += 1
            pair.expires = now + self._pair_ttl
        return FailureRecord(
            counted=True,
            address_failures=state.failures,
            account_failures=account_failures,
            delay=delay,
            banned_until=banned_until,
            events=tuple(events),
        )

    def abandoned(self, address: str | None, now: float) -> None:
        """An attempt that passed `check` ended without a verdict (the provider was
        down, the client aborted first): free its slot, count nothing."""
        where = self._counted(address)
        if where is None:
            return
        state = self._live_address(where.key, now)
        if state is not None:
            _release(state, now)

    def succeeded(
        self, address: str | None, username: str, now: float, *, reserved: bool = True
    ) -> None:
        """A login succeeded: forgive the failures this address made against this account
        (the owner's typos), and spare the address the account's delays from now on.

        Failures against other accounts stay: a valid account of one's own must not
        reset the counter that guards everyone else's."""
        opts = self.options
        where = self._counted(address)
        if where is None:
            return
        ukey = _account_key(username)
        pair = self._pairs.pop((ukey, where.key))
        forgiven = pair.failures if pair is not None and pair.expires > now else 0
        state = self._live_address(where.key, now)
        if state is not None:
            if reserved:
                _release(state, now)
            state.failures = max(0, state.failures - forgiven)
            a = opts.address
            state.level = backoff_delay(state.failures, a.free_failures, a.base_delay, a.max_delay)
        account = self._live_account(ukey, now)
        if account is not None and forgiven:
            c = opts.account
            account.failures = max(0, account.failures - forgiven)
            account.level = backoff_delay(
                account.failures, c.free_failures, c.base_delay, c.max_delay
            )
        self._trusted.put((ukey, where.key), _Trust(now + opts.account.trusted_for))

    def prune(self, now: float) -> int:
        """Forget expired entries (for a periodic timer; lookups expire entries anyway)."""
        return sum(
            table.prune(now)
            for table in (self._addresses, self._accounts, self._pairs, self._trusted)
        )

    # ------------------------------------------------------------ internals

    def _live_address(self, key: str, now: float) -> _AddressState | None:
        state = self._addresses.live(key, now)
        window = self.options.address.window
        if state is not None and state.failures and now - state.last_failure >= window:
            state.failures = 0
            state.level = 0.0
        return state

    def _live_account(self, key: str, now: float) -> _AccountState | None:
        # Account entries expire `window` after their last failure: no separate decay.
        return self._accounts.live(key, now)

    def _is_trusted(self, ukey: str, akey: str, now: float) -> bool:
        return self._trusted.live((ukey, akey), now) is not None

    def _account_delay(self, ukey: str, akey: str, now: float) -> float:
        account = self._live_account(ukey, now)
        if account is None or account.level == 0:
            return 0.0
        if self._is_trusted(ukey, akey, now):
            return 0.0
        return account.level

    def _account_failed(self, ukey: str, now: float) -> tuple[int, float, list[ThrottleEvent]]:
        limits = self.options.account
        account = self._live_account(ukey, now)
        if account is None:
            account = _AccountState()
            self._accounts.put(ukey, account)
        account.failures += 1
        account.last_failure = now
        account.expires = now + limits.window
        level = backoff_delay(
            account.failures, limits.free_failures, limits.base_delay, limits.max_delay
        )
        events: list[ThrottleEvent] = []
        if level > account.level:
            events.append(
                ThrottleEvent.ACCOUNT_THROTTLED
                if account.level == 0
                else ThrottleEvent.ACCOUNT_ESCALATED
            )
        account.level = level
        return account.failures, level, events


# ---------------------------------------------------------------- the registration core


class RegistrationThrottle:
    """Sliding-window limits on account creation: per address and in total.

    Call `check` before creating an account and `registered` after it was created.
    The same exemptions and IPv6 prefix as logins apply; `enabled` does not (an
    operator who turns login throttling off for a benchmark still wants this)."""

    def __init__(self, options: ThrottleOptions | None = None) -> None:
        self.options = options if options is not None else ThrottleOptions()
        self._addresses: _Lru[str, _Registrations] = _Lru(self.options.max_entries)
        limits = self.options.registration
        self._total: deque[float] = deque(maxlen=limits.total or None)
        self.stats = RegistrationStats()

    def sizes(self) -> dict[str, int]:
        return {"addresses": len(self._addresses)}

    def check(self, address: str | None, now: float) -> Verdict:
        """May `address` create an account now? `Refuse` carries when it may."""
        where = _locate(address, self.options.ipv6_prefix)
        if _exempt(self.options, where):
            return ALLOW
        limits = self.options.registration
        if limits.per_address:
            entry = self._addresses.live(where.key, now)
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

    def registered(self, address: str | None, now: float) -> None:
        """Count an account created from `address`."""
        self.stats.registrations += 1
        where = _locate(address, self.options.ipv6_prefix)
        if _exempt(self.options, where):
            return
        limits = self.options.registration
        if limits.total:
            self._total.append(now)
        if limits.per_address:
            entry = self._addresses.live(where.key, now)
            if entry is None:
                entry = _Registrations(deque(maxlen=limits.per_address))
                self._addresses.put(where.key, entry)
            entry.times.append(now)
            entry.expires = now + limits.address_period

    def prune(self, now: float) -> int:
        return self._addresses.prune(now)


#: Seconds below which two times count as equal (float rounding, millisecond timers).
_EPSILON = 1e-6


def _release(state: _AddressState, now: float) -> None:
    """An attempt from this address finished: drop its reservation, and when none is
    left outstanding, nothing is queued any more, so the next slot starts now.

    Without the second step a lone client retrying at once after an answer (its
    timer may fire a millisecond before the slot it was given) would find a slot
    still "ahead" of it and be refused as busy, never evaluated nor counted."""
    if state.pending:
        del state.pending[0]
    if not state.pending:
        state.next_slot = min(state.next_slot, now)


def _expire(times: deque[float], before: float) -> None:
    while times and times[0] <= before:
        times.popleft()
