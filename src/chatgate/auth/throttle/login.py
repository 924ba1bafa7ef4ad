"""The in-process `LoginThrottle`: evaluate credentials first, hold only failures.

It never awaits, never reads the clock (every call takes ``now``: monotonic
seconds, e.g. ``loop.time()``), never logs and never touches storage.  The
caller holds the failure's answer, logs and exports the plain-int statistics.

Theory of operation
-------------------

**Evaluate first, delay failures** (Dovecot's ``auth_failure_delay``).  An
allowed attempt is evaluated at once; a success is answered at once, a failure
is answered only after its *hold*: 0 for an address's first ``free_failures``
failures within ``window``, then ``base_delay`` doubling up to ``max_delay``
(the account's own hold, from all addresses, applies too, see below).  So users
behind one address (a NAT) are never locked out by an attacker there: a right
password is never made to wait for someone else's wrong ones.

**Slots bound the guesses.**  Delaying only failures would let a client with many
connections read "no success within 100 ms" as "wrong" and guess at full speed.
So each attempt takes a *slot* of its address from `check` on: a success frees
it at once, a failure keeps it until its hold ends (whether or not the client
waits for the answer), and an attempt whose client leaves while its credentials
are evaluated counts as a failure (the driver reports it when the evaluation
ends) and keeps its slot as long.  An attempt *parked* waiting for the client
(SCRAM between its challenge and the client's proof: nothing is being evaluated)
keeps its slot too, since the proof is checked the moment it arrives, but is
freed uncounted when the client leaves (`client_left`); an attempt never
resolved at all keeps its slot ``attempt_ttl``, and is then counted as a failure
unless it was parked.  An address has ``max_in_flight`` slots, ``max_in_flight_per_account``
of them at most for one account; an attempt finding none free is refused
unevaluated (`Refuse`, answered temporary-auth-failure).  On one connection the
negotiation state already forbids a new attempt while a failure is held.

The documented bounds follow, for an attacker holding every slot (``F`` =
``free_failures``, ``R`` = the doubling steps below ``max_delay``, i.e.
``ceil(log2(max_delay / base_delay))``, ``C`` = ``max_in_flight``, ``k`` =
``max_in_flight_per_account``, ``d`` = ``max_delay``).  In any ``T`` seconds of
a continuous attack, guesses evaluated from one address are at most
``F + R + C * (1 + T / d)``, and against one account from one address at most
``F + R + k * (1 + T / d)``; with the defaults (5, 5, 8, 2, 20 s) that is 42 and
18 in the first minute, 24 and 6 in each further one.

**Trusted pairs have their own slots.**  An address an account logged in from
within ``trusted_for`` (OWASP's "device cookie", keyed by address) is not counted
against the address's ``max_in_flight`` for that account, only against
``max_in_flight_per_account``: an attacker filling an address's slots with
guesses at many accounts does not keep out a neighbour behind the same NAT who
logged in before.  ``free_failures`` failures of that pair end the trust, so an
attacker there gains at most that many guesses per trusted account.

**Per account** (failures against one username from all addresses together: a
distributed guess).  Locking an account out is a denial-of-service tool, so the
account-wide counter is soft: past its own, larger ``free_failures`` it lengthens
the hold of failures against that account, never refuses, and it spares trusted
pairs.  The owner gets in; the attacker pays the hold on every wrong guess.  The
per-account bound therefore scales with the attacker's addresses (``k * 60 / d``
guesses per minute from each).

**Success forgives only its own failures.**  `succeeded(address, account)`
subtracts the failures that this address made against this account from both
counters (the owner's typos) and marks the pair trusted.  It does not reset the
address: otherwise an attacker holding one valid account could interleave logins
to it with guesses at another and never be slowed.

**No account enumeration.**  The throttle never learns whether a username exists:
unknown and existing usernames are counted, held and refused in exactly the same
way.  (Equal answers and evaluation times for unknown users are the mechanisms'
and providers' job: SCRAM's derived salts, a dummy hash in password checks.)

**Bounded memory.**  Every table is an `LruCache` of at most ``max_entries``
entries (see `tables.py`); an address's slots are bounded by its caps.  `prune` drops expired
entries from the old end, for a periodic timer.

Known limit: an attacker who fills all ``max_in_flight`` slots of an address with
guesses at many accounts keeps out, for as long as the attack lasts, users behind
that address who never logged in from it before (trusted pairs are not affected).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Final

from chatgate.auth.throttle.base import (
    ALLOW,
    AuthThrottleStats,
    FailureRecord,
    Refuse,
    ThrottleEvent,
    ThrottleReason,
    Verdict,
    backoff_delay,
)
from chatgate.auth.throttle.options import AccountLimits, AddressLimits, ThrottleOptions
from chatgate.auth.throttle.tables import (
    Where,
    account_key,
    expiring_table,
    is_exempt,
    live,
    locate,
    prune,
)
from chatgate.lru import ENTRY_OVERHEAD, LruCache

__all__ = ["AuthThrottle"]


@dataclass(slots=True)
class _Slot:
    """One attempt in flight: unresolved until `until` (then counted as abandoned, or
    just dropped when parked), or a failure held until `until`."""

    until: float
    account: str | None
    trusted: bool
    resolved: bool = False
    parked: bool = False  # waiting for the client, nothing being evaluated


@dataclass(slots=True)
class _AddressState:
    failures: int = 0
    last_failure: float = 0.0
    level: float = 0.0  # hold of the latest failure (escalation events)
    #: attempts in flight, oldest first (a short list: bounded by the slot caps)
    slots: list[_Slot] = field(default_factory=list)
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


# What each table's records weigh (tracemalloc, CPython 3.11): an address state with
# one slot in flight (8 slots: 768), an account state, a failure pair, a trust mark.
_ADDRESS_BYTES = 208
_ACCOUNT_BYTES = 64
_PAIR_BYTES = 48
_TRUST_BYTES = 40

#: Addresses whose place (`_counted`) is remembered, and the most one entry may weigh:
#: an address a transport reports is at most 45 characters (IPv6 with an IPv4 tail),
#: so a longer one is not remembered, only located each time.
_PLACES = 4096
_PLACE_BYTES = 512
#: `_places`' answer for an address not seen yet: a `Where` no address locates to.
_UNSEEN: Final = Where("", None)
_getsizeof = sys.getsizeof


def _weigh_place(address: str | None, _place: object) -> int:
    # The key, plus a `Where` with its address string and ip object (the values are
    # shared with `locate`'s cache, so this overstates what a place keeps alive).
    return _getsizeof(address) + 200


#: Seconds by which a slot may be reused early: a timer may fire a hair before the
#: hold it waited for ends, and a client answering at once must find its slot free.
_EPSILON = 1e-3


def _take(slots: list[_Slot], ukey: str | None, *, parked: bool = False) -> _Slot | None:
    """The unresolved slot an attempt against `ukey` took (the oldest such, else the
    oldest unresolved one: a mechanism may report a different claimed name); with
    `parked`, only parked ones."""
    fallback = None
    for slot in slots:
        if not slot.resolved and (slot.parked or not parked):
            if slot.account == ukey:
                return slot
            if fallback is None:
                fallback = slot
    return fallback


class AuthThrottle:
    """Per-address and per-account failure counting; see the module docstring.

    ``attempt_ttl`` is the longest an attempt can stay unresolved: pass `[auth]
    auth_timeout`, after which an unauthenticated connection is closed.
    """

    def __init__(self, options: ThrottleOptions | None = None, attempt_ttl: float = 60.0) -> None:
        if attempt_ttl <= 0:
            raise ValueError("attempt_ttl must be positive")
        self.options = options if options is not None else ThrottleOptions()
        self.attempt_ttl = attempt_ttl
        limit = self.options.max_entries
        self._addresses: LruCache[str, _AddressState] = expiring_table(limit, _ADDRESS_BYTES)
        self._accounts: LruCache[str, _AccountState] = expiring_table(limit, _ACCOUNT_BYTES)
        self._pairs: LruCache[tuple[str, str], _PairState] = expiring_table(limit, _PAIR_BYTES)
        self._trusted: LruCache[tuple[str, str], _Trust] = expiring_table(limit, _TRUST_BYTES)
        self._stats = AuthThrottleStats()
        #: address -> where its attempts are counted (None: protection is off or the
        #: address is exempt).  The options are fixed, so an address's place never
        #: changes; remembering it spares every call the address parsing and the
        #: exemption checks (three calls per login).
        self._places: LruCache[str | None, Where | None] = LruCache(
            _PLACES,
            _PLACES * (ENTRY_OVERHEAD + _PLACE_BYTES),
            _weigh_place,
            max_entry_bytes=_PLACE_BYTES,
        )
        self._place = self._places.mapping.get
        # Failures are kept as long as either counter may need them.
        self._pair_ttl = max(self.options.address.window, self.options.account.window)

    # ------------------------------------------------------------ queries

    @property
    def stats(self) -> AuthThrottleStats:
        self._stats.evictions = (
            self._addresses.evictions
            + self._accounts.evictions
            + self._pairs.evictions
            + self._trusted.evictions
        )
        return self._stats

    def throttled_addresses(self, now: float) -> int:
        """Addresses whose latest failure is still holding their answers (for
        metrics: walks the bounded address table, so call it at most once a second)."""
        window = self.options.address.window
        return sum(
            1
            for state in self._addresses.mapping.values()
            if state.level > 0 and state.expires > now and now - state.last_failure < window
        )

    def sizes(self) -> dict[str, int]:
        """Entries per table, for metrics and memory tests."""
        return {
            "addresses": len(self._addresses),
            "accounts": len(self._accounts),
            "pairs": len(self._pairs),
            "trusted": len(self._trusted),
        }

    def in_flight(self, address: str | None, now: float) -> int:
        """Slots of `address` taken now (attempts evaluated or failures held)."""
        where = self._counted(address)
        state = None if where is None else self._live_address(where.key, now)
        return 0 if state is None else len(state.slots)

    # ------------------------------------------------------------ the calls

    def _counted(self, address: str | None) -> Where | None:
        """Where attempts from `address` are counted; None when protection is off or
        the address is exempt (then nothing is checked or counted for it).  The hot
        calls (`check`, `succeeded`, `parked`) inline the look-up of `_places`."""
        place = self._place(address, _UNSEEN)
        if place is _UNSEEN:
            place = self._locate(address)
        return place

    def _locate(self, address: str | None) -> Where | None:
        opts = self.options
        where: Where | None = None
        if opts.enabled:
            where = locate(address, opts.ipv6_prefix)
            if is_exempt(opts, where):
                where = None
        self._places.put(address, where)
        return where

    def check(self, address: str | None, account: str | None, now: float) -> Verdict:
        """May an attempt from `address` claiming `account` be evaluated now?  Takes a
        slot when it may; `Refuse` (BUSY, BUSY_ACCOUNT) when none is free."""
        where = self._place(address, _UNSEEN)  # `_counted`, inlined (once per login)
        if where is _UNSEEN:
            where = self._locate(address)
        if where is None:
            return ALLOW
        limits = self.options.address
        ukey = None if account is None else account_key(account)
        trusted = ukey is not None and live(self._trusted, (ukey, where.key), now) is not None
        state = self._live_address(where.key, now)
        if state is None:
            state = _AddressState()
            self._addresses.put(where.key, state)
        elif state.slots:
            pair = untrusted = 0
            pair_free = address_free = float("inf")
            for slot in state.slots:
                if ukey is not None and slot.account == ukey:
                    pair += 1
                    pair_free = min(pair_free, slot.until)
                if not slot.trusted:
                    untrusted += 1
                    address_free = min(address_free, slot.until)
            if pair >= limits.max_in_flight_per_account:
                return self._refuse(ThrottleReason.BUSY_ACCOUNT, pair_free - now)
            if not trusted and untrusted >= limits.max_in_flight:
                return self._refuse(ThrottleReason.BUSY, address_free - now)
        until = now + self.attempt_ttl
        state.slots.append(_Slot(until, ukey, trusted))
        # Long enough to count the attempt as abandoned, then to remember that failure.
        state.expires = max(state.expires, until + limits.window)
        return ALLOW

    def failed(
        self, address: str | None, account: str | None, now: float, *, reserved: bool = True
    ) -> FailureRecord:
        """Count a failed guess (see `counts_as_guess`); unknown usernames count the same.
        The record's `delay` is how long to hold the failure's answer; its slot stays
        taken as long.  `reserved`: this attempt went through `check` (a mechanism
        may fail before it asks for credentials: then no slot is held)."""
        self._stats.failures += 1
        where = self._counted(address)
        if where is None:
            return FailureRecord(counted=False)
        limits = self.options.address
        state = self._live_address(where.key, now)
        if state is None:
            state = _AddressState()
            self._addresses.put(where.key, state)
        state.failures += 1
        state.last_failure = now
        hold = backoff_delay(
            state.failures - 1, limits.free_failures, limits.base_delay, limits.max_delay
        )
        events: list[ThrottleEvent] = []
        if hold > state.level:
            events.append(
                ThrottleEvent.ADDRESS_THROTTLED
                if state.level == 0
                else ThrottleEvent.ADDRESS_ESCALATED
            )
        state.level = hold

        account_failures = 0
        ukey = None
        if account is not None:
            ukey = account_key(account)
            account_failures, account_hold, account_events = self._account_failed(ukey, now)
            events += account_events
            pair_key = (ukey, where.key)
            trusted = self._is_trusted(ukey, where.key, now)
            if not trusted:
                hold = max(hold, account_hold)
            pair = live(self._pairs, pair_key, now)
            if pair is None:
                pair = _PairState()
                self._pairs.put(pair_key, pair)
            pair.failures += 1
            pair.expires = now + self._pair_ttl
            if trusted and pair.failures >= limits.free_failures:
                self._trusted.pop(pair_key)  # typos end here; guesses do not go on
        if reserved:
            slot = _take(state.slots, ukey)
            if slot is not None:
                if hold > 0:
                    slot.resolved = True
                    slot.until = now + hold
                else:
                    state.slots.remove(slot)
        state.expires = max(state.expires, now + limits.window + hold)
        if hold > 0:
            self._stats.delays += 1
            self._stats.delay_seconds += hold
        return FailureRecord(
            counted=True,
            address_failures=state.failures,
            account_failures=account_failures,
            delay=hold,
            events=tuple(events),
        )

    def succeeded(
        self, address: str | None, account: str, now: float, *, reserved: bool = True
    ) -> None:
        """A login succeeded: free its slot, forgive the failures this address made
        against this account (the owner's typos), and trust the pair from now on.

        Failures against other accounts stay: a valid account of one's own must not
        reset the counter that guards everyone else's."""
        where = self._place(address, _UNSEEN)  # `_counted`, inlined (once per login)
        if where is _UNSEEN:
            where = self._locate(address)
        if where is None:
            return
        opts = self.options
        ukey = account_key(account)
        pair = self._pairs.pop((ukey, where.key))
        forgiven = pair.failures if pair is not None and pair.expires > now else 0
        state = self._live_address(where.key, now)
        if state is not None:
            if reserved:
                slot = _take(state.slots, ukey)
                if slot is not None:
                    state.slots.remove(slot)
            if forgiven:
                a = opts.address
                state.failures = max(0, state.failures - forgiven)
                state.level = backoff_delay(
                    state.failures - 1, a.free_failures, a.base_delay, a.max_delay
                )
        account_state = self._live_account(ukey, now)
        if account_state is not None and forgiven:
            c = opts.account
            account_state.failures = max(0, account_state.failures - forgiven)
            account_state.level = backoff_delay(
                account_state.failures - 1, c.free_failures, c.base_delay, c.max_delay
            )
        # Trust runs from now: renewed in place (what `put` of a new mark would do,
        # without weighing an entry out and in again on every login).
        trust_key = (ukey, where.key)
        until = now + opts.account.trusted_for
        trust = live(self._trusted, trust_key, now)
        if trust is None:
            self._trusted.put(trust_key, _Trust(until))
        else:
            trust.expires = until

    def released(self, address: str | None, account: str | None, now: float) -> None:
        """An attempt that passed `check` ended without a verdict on a guess (the
        provider was down, the client aborted before proving anything): free its
        slot, count nothing."""
        where = self._counted(address)
        if where is None:
            return
        state = self._live_address(where.key, now)
        if state is not None:
            slot = _take(state.slots, None if account is None else account_key(account))
            if slot is not None:
                state.slots.remove(slot)

    def parked(self, address: str | None, account: str | None, now: float) -> None:
        """The attempt waits for the client (SCRAM sent its challenge): its slot stays
        taken, but `client_left` frees it uncounted."""
        where = self._place(address, _UNSEEN)  # `_counted`, inlined (once per login)
        if where is _UNSEEN:
            where = self._locate(address)
        if where is None:
            return
        state = self._live_address(where.key, now)
        if state is not None:
            slot = _take(state.slots, None if account is None else account_key(account))
            if slot is not None:
                slot.parked = True

    def client_left(self, address: str | None, account: str | None, now: float) -> bool:
        """The client of an unresolved attempt went away.  A parked attempt is freed,
        uncounted (True); one being evaluated stays (False): the caller reports its
        outcome, as a failure, when the evaluation ends."""
        where = self._counted(address)
        state = None if where is None else self._live_address(where.key, now)
        if state is None:
            return True
        slot = _take(state.slots, None if account is None else account_key(account), parked=True)
        if slot is None:
            return False
        state.slots.remove(slot)
        return True

    def prune(self, now: float) -> int:
        """Forget expired entries (for a periodic timer; lookups expire entries anyway)."""
        return (
            prune(self._addresses, now)
            + prune(self._accounts, now)
            + prune(self._pairs, now)
            + prune(self._trusted, now)
        )

    # ------------------------------------------------------------ shared counts

    def place(self, address: str | None) -> str | None:
        """The key `address`'s attempts are counted under; None when protection is
        off or the address is exempt.  For a shared store, which keys its counters
        the same way."""
        where = self._counted(address)
        return None if where is None else where.key

    def merge_failure(
        self,
        akey: str,
        ukey: str | None,
        now: float,
        *,
        address_failures: int,
        account_failures: int = 0,
        pair_failures: int = 0,
        hold: float = 0.0,
        trusted: bool = False,
    ) -> None:
        """Take in a failure counted elsewhere (another process of a cluster), with
        the shared totals it produced: each counter becomes at least its total (never
        less: this table may know failures the shared store has not seen yet), and a
        held failure takes one of the address's slots for `hold` seconds, as it does
        where it was made, so that slots bound guesses across processes too.  Keys
        are `place` and `account_key` forms.  Not on a login's path."""
        limits = self.options.address
        state = self._live_address(akey, now)
        if state is None:
            state = _AddressState()
            self._addresses.put(akey, state)
        if address_failures > state.failures:
            state.failures = address_failures
            state.level = backoff_delay(
                state.failures - 1, limits.free_failures, limits.base_delay, limits.max_delay
            )
        state.last_failure = max(state.last_failure, now)
        if hold > 0 and len(state.slots) < limits.max_in_flight:
            state.slots.append(_Slot(now + hold, ukey, trusted, resolved=True))
        state.expires = max(state.expires, now + limits.window + hold)
        if ukey is None:
            return
        account = self._live_account(ukey, now)
        if account is None:
            account = _AccountState()
            self._accounts.put(ukey, account)
        if account_failures > account.failures:
            c = self.options.account
            account.failures = account_failures
            account.level = backoff_delay(
                account.failures - 1, c.free_failures, c.base_delay, c.max_delay
            )
        account.last_failure = max(account.last_failure, now)
        account.expires = max(account.expires, now + self.options.account.window)
        pair_key = (ukey, akey)
        pair = live(self._pairs, pair_key, now)
        if pair is None:
            pair = _PairState()
            self._pairs.put(pair_key, pair)
        pair.failures = max(pair.failures, pair_failures)
        pair.expires = now + self._pair_ttl
        if pair.failures >= limits.free_failures:
            self._trusted.pop(pair_key)  # as `failed` ends a trust

    def merge_count(
        self,
        *,
        akey: str | None = None,
        ukey: str | None = None,
        failures: int,
        last_failure: float,
        now: float,
    ) -> None:
        """Take in one shared counter as the store holds it (a node that starts while
        others run reads them all): the address `akey`'s or the account `ukey`'s
        failures, the latest at `last_failure`.  Never lowers a count."""
        a, c = self.options.address, self.options.account
        if akey is not None and now - last_failure < a.window:
            state = self._live_address(akey, now)
            if state is None:
                state = _AddressState()
                self._addresses.put(akey, state)
            _raise_count(state, failures, last_failure, a)
        if ukey is not None and now - last_failure < c.window:
            account = self._live_account(ukey, now)
            if account is None:
                account = _AccountState()
                self._accounts.put(ukey, account)
            _raise_count(account, failures, last_failure, c)

    def merge_success(self, akey: str, ukey: str, now: float, *, forgiven: int) -> None:
        """Take in a login that succeeded elsewhere: what `succeeded` does to the
        counters and the trust, with the `forgiven` failures the shared store
        subtracted (the pair's own, from every process); frees no slot."""
        opts = self.options
        pair = self._pairs.pop((ukey, akey))
        if pair is not None and pair.expires > now:
            forgiven = max(forgiven, pair.failures)
        if forgiven:
            state = self._live_address(akey, now)
            if state is not None:
                a = opts.address
                state.failures = max(0, state.failures - forgiven)
                state.level = backoff_delay(
                    state.failures - 1, a.free_failures, a.base_delay, a.max_delay
                )
            account = self._live_account(ukey, now)
            if account is not None:
                c = opts.account
                account.failures = max(0, account.failures - forgiven)
                account.level = backoff_delay(
                    account.failures - 1, c.free_failures, c.base_delay, c.max_delay
                )
        until = now + opts.account.trusted_for
        trust = live(self._trusted, (ukey, akey), now)
        if trust is None:
            self._trusted.put((ukey, akey), _Trust(until))
        else:
            trust.expires = max(trust.expires, until)

    # ------------------------------------------------------------ internals

    def _refuse(self, reason: ThrottleReason, retry_after: float) -> Refuse:
        self._stats.refusals += 1
        return Refuse(reason, max(0.0, retry_after))

    def _live_address(self, key: str, now: float) -> _AddressState | None:
        state = live(self._addresses, key, now)
        if state is None:
            return None
        edge = now + _EPSILON
        for slot in state.slots:  # a short list; a loop is cheaper than min() of a genexpr
            if slot.until <= edge:
                self._free_slots(state, now)
                break
        window = self.options.address.window
        if state.failures and now - state.last_failure >= window:
            state.failures = 0
            state.level = 0.0
        return state

    def _free_slots(self, state: _AddressState, now: float) -> None:
        """Drop slots whose time is up; one never resolved nor parked was abandoned
        mid-evaluation (the client may have read the silence): it counts as a failure,
        as of its expiry."""
        kept = []
        for slot in state.slots:
            if slot.until > now + _EPSILON:
                kept.append(slot)
            elif not slot.resolved and not slot.parked:
                self._stats.abandoned += 1
                state.failures += 1
                state.last_failure = max(state.last_failure, slot.until)
                if slot.account is not None:
                    self._account_failed(slot.account, slot.until)
        state.slots = kept

    def _live_account(self, key: str, now: float) -> _AccountState | None:
        # Account entries expire `window` after their last failure: no separate decay.
        return live(self._accounts, key, now)

    def _is_trusted(self, ukey: str, akey: str, now: float) -> bool:
        return live(self._trusted, (ukey, akey), now) is not None

    def _account_failed(self, ukey: str, now: float) -> tuple[int, float, list[ThrottleEvent]]:
        limits = self.options.account
        account = self._live_account(ukey, now)
        if account is None:
            account = _AccountState()
            self._accounts.put(ukey, account)
        account.failures += 1
        account.last_failure = max(account.last_failure, now)
        account.expires = max(account.expires, now + limits.window)
        level = backoff_delay(
            account.failures - 1, limits.free_failures, limits.base_delay, limits.max_delay
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


def _raise_count(
    state: _AddressState | _AccountState,
    failures: int,
    last_failure: float,
    limits: AddressLimits | AccountLimits,
) -> None:
    """A shared count taken into an address's or account's entry: never lowered,
    its hold level and expiry following it."""
    if failures > state.failures:
        state.failures = failures
        state.level = backoff_delay(
            failures - 1, limits.free_failures, limits.base_delay, limits.max_delay
        )
    state.last_failure = max(state.last_failure, last_failure)
    state.expires = max(state.expires, last_failure + limits.window)
