"""Brute-force protection and registration limits (`chatgate.auth.throttle`).

Every test passes `now` explicitly: nothing sleeps.  A client that "waits for
its answer" is simulated by advancing `now` by each failure's hold.
"""

from __future__ import annotations

import math
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chatgate.auth.throttle import (
    ALLOW,
    AccountLimits,
    AddressLimits,
    AuthThrottle,
    LoginThrottle,
    Refuse,
    RegistrationLimiter,
    RegistrationLimits,
    RegistrationThrottle,
    ThrottleEvent,
    ThrottleOptions,
    ThrottleReason,
    backoff_delay,
    counts_as_guess,
    throttle_account,
)
from chatgate.vocabulary.errors import SaslFailureCondition

ATTACKER = "1.2.3.4"
OTHER = "5.6.7.8"
ALICE_HOME = "198.51.100.7"


def options(**changes: object) -> ThrottleOptions:
    return ThrottleOptions.model_validate(changes)


def fail_n(
    throttle: AuthThrottle, n: int, address: str | None, user: str | None, now: float
) -> None:
    """`n` failures that never took a slot (no `check`): counting only."""
    for _ in range(n):
        throttle.failed(address, user, now, reserved=False)


def holds_of_sequential_guesser(throttle: AuthThrottle, attempts: int) -> list[float]:
    """A client that waits for each answer: the hold each failure got (0 = none)."""
    now, seen = 0.0, []
    for _ in range(attempts):
        assert throttle.check(ATTACKER, "alice", now) is ALLOW
        hold = throttle.failed(ATTACKER, "alice", now).delay
        seen.append(hold)
        now += hold
    return seen


def greedy_guesses(throttle: AuthThrottle, accounts: list[str], seconds: float) -> int:
    """The most guesses an attacker with unlimited connections gets evaluated in
    `seconds`: whenever a slot is free it starts an attempt (rotating `accounts`),
    never waits for an answer; every attempt is a wrong guess."""
    now, guesses, i = 0.0, 0, 0
    while now <= seconds:
        verdict = throttle.check(ATTACKER, accounts[i % len(accounts)], now)
        if isinstance(verdict, Refuse):
            now += max(verdict.retry_after, 1e-3)
            continue
        throttle.failed(ATTACKER, accounts[i % len(accounts)], now)
        guesses += 1
        i += 1
    return guesses


def documented_bound(opts: ThrottleOptions, slots: int, seconds: float) -> float:
    """login.py's bound: F + R + slots * (1 + T / d)."""
    a = opts.address
    ramp = math.ceil(math.log2(a.max_delay / a.base_delay))
    return a.free_failures + ramp + slots * (1 + seconds / a.max_delay)


def test_the_in_process_cores_implement_the_shared_interfaces() -> None:
    login: LoginThrottle = AuthThrottle()
    registration: RegistrationLimiter = RegistrationThrottle()
    assert login.stats.failures == 0 and registration.stats.attempts == 0


# ---------------------------------------------------------------- holds


def test_first_free_failures_are_answered_at_once() -> None:
    throttle = AuthThrottle(options(account={"free_failures": 1000}))
    assert holds_of_sequential_guesser(throttle, 5) == [0.0] * 5


def test_holds_double_with_each_failure_then_cap_at_max_delay() -> None:
    throttle = AuthThrottle(options(account={"free_failures": 1000}))
    holds = holds_of_sequential_guesser(throttle, 13)
    assert holds == [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 20, 20, 20]


@given(
    failures=st.integers(min_value=0, max_value=10**9),
    free=st.integers(min_value=0, max_value=1000),
    base=st.floats(min_value=0.001, max_value=100),
    cap=st.floats(min_value=100, max_value=10_000),
)
def test_backoff_is_the_capped_exponential_and_never_overflows(
    failures: int, free: int, base: float, cap: float
) -> None:
    delay = backoff_delay(failures, free, base, cap)
    if failures < free:
        assert delay == 0
    else:
        assert delay == min(cap, base * 2.0 ** min(failures - free, 64))
        assert base <= delay <= cap
        assert backoff_delay(failures + 1, free, base, cap) >= delay


# ---------------------------------------------------------------- the scenario


def test_right_password_from_an_attacked_address_is_evaluated_at_once() -> None:
    """Issue 9 item 13: after 50 wrong passwords from one address, a different account
    with its right password from that address is evaluated (and answered) at once."""
    throttle = AuthThrottle()
    now = 0.0
    for _ in range(50):
        assert throttle.check(ATTACKER, "victim", now) is ALLOW
        now += throttle.failed(ATTACKER, "victim", now).delay
    assert throttle.check(ATTACKER, "bob", now) is ALLOW
    throttle.succeeded(ATTACKER, "bob", now)
    # ... while the attacker's next wrong guess is still held the longest.
    assert throttle.check(ATTACKER, "victim", now) is ALLOW
    assert throttle.failed(ATTACKER, "victim", now).delay == 20.0


def test_a_sequential_attacker_is_held_never_refused_and_logged_a_handful_of_times() -> None:
    throttle = AuthThrottle()
    throttle.check(ALICE_HOME, "alice", 0.0)
    throttle.succeeded(ALICE_HOME, "alice", 0.0)
    now, held, logged = 0.0, 0.0, []
    for _ in range(200):
        assert throttle.check(ATTACKER, "alice", now) is ALLOW
        record = throttle.failed(ATTACKER, "alice", now)
        if record.should_log:
            logged.append(record.events)
        held += record.delay
        now += record.delay
        assert throttle.check(OTHER, "bob", now) is ALLOW  # bob elsewhere: untouched
        throttle.succeeded(OTHER, "bob", now)
    assert held == 1 + 2 + 4 + 8 + 16 + 20 * 190
    assert [e for events in logged for e in events if e.name.startswith("ADDRESS")] == [
        ThrottleEvent.ADDRESS_THROTTLED,
        *[ThrottleEvent.ADDRESS_ESCALATED] * 5,  # 2, 4, 8, 16, 20 (capped: no more)
    ]
    assert len(logged) <= 12
    stats = throttle.stats
    assert (stats.failures, stats.refusals, stats.delays) == (200, 0, 195)
    # alice herself: at once from home (no account hold), and from a new address her
    # right password is evaluated at once too (only failures are held).
    assert throttle.check(ALICE_HOME, "alice", now) is ALLOW
    assert throttle.check("203.0.113.9", "alice", now) is ALLOW


def test_guesses_per_address_stay_within_the_documented_bound() -> None:
    """An attacker with as many connections as it likes, guessing at a new account each
    time, gets at most F + R + C * (1 + T / d) guesses evaluated in T seconds."""
    opts = ThrottleOptions()
    for seconds in (60.0, 600.0):
        guesses = greedy_guesses(AuthThrottle(opts), [f"user{i}" for i in range(10_000)], seconds)
        bound = documented_bound(opts, opts.address.max_in_flight, seconds)
        assert guesses <= bound
        assert guesses >= opts.address.max_in_flight * seconds / opts.address.max_delay
    # The defaults as docs/security.md states them: 42 in the first minute, 24 a minute after.
    assert documented_bound(opts, 8, 60.0) == 42
    assert (
        greedy_guesses(AuthThrottle(opts), [f"u{i}" for i in range(10_000)], 600.0) <= 42 + 24 * 9
    )


def test_guesses_per_account_from_one_address_stay_within_the_documented_bound() -> None:
    opts = ThrottleOptions(account=AccountLimits(free_failures=1_000_000))
    for seconds in (60.0, 600.0):
        guesses = greedy_guesses(AuthThrottle(opts), ["victim"], seconds)
        assert guesses <= documented_bound(opts, opts.address.max_in_flight_per_account, seconds)
    assert documented_bound(opts, 2, 60.0) == 18


def test_an_account_not_under_attack_is_admitted_while_another_is_guessed_in_parallel() -> None:
    throttle = AuthThrottle(options(address={"free_failures": 0}))
    verdicts = [throttle.check(ATTACKER, "victim", 0.0) for _ in range(5)]
    assert verdicts[:2] == [ALLOW, ALLOW]
    assert all(
        isinstance(v, Refuse) and v.reason is ThrottleReason.BUSY_ACCOUNT for v in verdicts[2:]
    )
    for _ in range(2):
        assert throttle.failed(ATTACKER, "victim", 0.1).delay > 0  # held: slots stay taken
    assert isinstance(throttle.check(ATTACKER, "victim", 0.5), Refuse)
    assert throttle.check(ATTACKER, "bob", 0.5) is ALLOW  # never logged in from here
    throttle.succeeded(ATTACKER, "bob", 0.5)


def test_a_held_failure_keeps_its_slot_until_its_hold_ends() -> None:
    throttle = AuthThrottle(
        options(address={"free_failures": 0, "base_delay": 10, "max_delay": 10, "max_in_flight": 2})
    )
    for user in ("a", "b"):
        assert throttle.check(ATTACKER, user, 0.0) is ALLOW
        assert throttle.failed(ATTACKER, user, 0.0).delay == 10.0
    assert throttle.check(ATTACKER, "c", 9.0) == Refuse(ThrottleReason.BUSY, 1.0)
    assert throttle.check(ATTACKER, "c", 10.0) is ALLOW


def test_a_slot_is_free_when_its_hold_ends_even_at_large_clock_values() -> None:
    """`now + hold` compared later with a clock a hair behind must not refuse a client
    that answers at once (a timer may fire a little early)."""
    throttle = AuthThrottle(
        options(address={"free_failures": 0, "base_delay": 0.05, "max_delay": 0.05})
    )
    now = 4007.181
    for _ in range(20):
        for user in ("a", "b"):
            assert throttle.check(ATTACKER, user, now) is ALLOW
        hold = 0.0
        for user in ("a", "b"):
            hold = throttle.failed(ATTACKER, user, now).delay
        now += hold - 1e-4


def test_abandoned_attempts_count_as_failures_and_hold_their_slot() -> None:
    """A client that starts attempts and never finishes them (it read the silence, or
    it left mid-exchange) holds their slots for `attempt_ttl`; then each counts as a
    failure, for the address and the claimed account."""
    throttle = AuthThrottle(options(address={"max_in_flight": 4}), attempt_ttl=30.0)
    for i in range(4):
        assert throttle.check(ATTACKER, f"user{i}", 0.0) is ALLOW
    assert throttle.check(ATTACKER, "user9", 29.0) == Refuse(ThrottleReason.BUSY, 1.0)
    assert throttle.check(ATTACKER, "user9", 30.0) is ALLOW
    assert throttle.stats.abandoned == 4
    record = throttle.failed(ATTACKER, "user0", 30.0)
    assert (record.address_failures, record.account_failures) == (5, 2)


def test_a_parked_attempt_keeps_its_slot_but_leaving_frees_it_uncounted() -> None:
    """SCRAM between its challenge and the client's proof: nothing is evaluated, but
    the proof is checked the moment it arrives, so the slot stays taken; a client
    that leaves then frees it without a failure, and so does its expiry."""
    throttle = AuthThrottle(options(address={"max_in_flight": 2}), attempt_ttl=30.0)
    for user in ("alice", "bob"):
        assert throttle.check(ATTACKER, user, 0.0) is ALLOW
        throttle.parked(ATTACKER, user, 0.0)
    assert isinstance(throttle.check(ATTACKER, "carol", 1.0), Refuse)
    assert throttle.client_left(ATTACKER, "alice", 1.0) is True
    assert throttle.check(ATTACKER, "carol", 1.0) is ALLOW  # alice's slot is free again
    assert throttle.in_flight(ATTACKER, 31.0) == 0  # bob's parked slot just expired ...
    assert throttle.stats.abandoned == 1  # ... carol's, never resolved nor parked, counted
    assert throttle.failed(ATTACKER, "x", 31.0, reserved=False).address_failures == 2


def test_a_client_leaving_during_evaluation_keeps_the_slot_for_its_outcome() -> None:
    throttle = AuthThrottle()
    assert throttle.check(ATTACKER, "alice", 0.0) is ALLOW  # a PLAIN check in progress
    assert throttle.client_left(ATTACKER, "alice", 0.1) is False
    assert throttle.in_flight(ATTACKER, 0.1) == 1
    assert throttle.client_left(None, "alice", 0.1) is True  # nothing there to keep


def test_released_attempts_free_their_slot_and_count_nothing() -> None:
    throttle = AuthThrottle(options(address={"max_in_flight": 2}))
    for _ in range(50):  # e.g. the provider is down: temporary-auth-failure each time
        assert throttle.check(ATTACKER, "alice", 0.0) is ALLOW
        throttle.released(ATTACKER, "alice", 0.0)
    assert throttle.failed(ATTACKER, "alice", 0.0, reserved=False).address_failures == 1


def test_resolved_attempts_release_their_slot() -> None:
    throttle = AuthThrottle()
    for _ in range(50):  # a busy but honest address: many logins, all good
        assert throttle.check(OTHER, "alice", 0.0) is ALLOW
        throttle.succeeded(OTHER, "alice", 0.0)


def test_parallel_logins_from_one_address_share_its_slots() -> None:
    throttle = AuthThrottle()
    verdicts = [throttle.check("198.51.100.7", f"user{i}", 0.0) for i in range(9)]
    assert verdicts[:8] == [ALLOW] * 8
    assert verdicts[8] == Refuse(ThrottleReason.BUSY, 60.0)
    for i in range(8):
        throttle.succeeded("198.51.100.7", f"user{i}", 0.01)
    assert throttle.check("198.51.100.7", "user8", 0.02) is ALLOW


def test_a_failure_that_held_no_slot_does_not_free_another_attempts_slot() -> None:
    throttle = AuthThrottle(options(address={"max_in_flight": 2}))
    assert throttle.check(ATTACKER, "user1", 0.0) is ALLOW
    assert throttle.check(ATTACKER, "user2", 0.0) is ALLOW
    # A failure before any credentials were asked for (e.g. SCRAM's invalid-authzid):
    # it never passed `check`, so it must not free one of the two slots.
    throttle.failed(ATTACKER, None, 0.0, reserved=False)
    assert isinstance(throttle.check(ATTACKER, "user3", 0.0), Refuse)


# ---------------------------------------------------------------- trusted pairs


def test_a_trusted_user_gets_in_while_an_attacker_fills_the_address_slots() -> None:
    throttle = AuthThrottle(options(address={"free_failures": 0}))
    throttle.check(ATTACKER, "bob", 0.0)
    throttle.succeeded(ATTACKER, "bob", 0.0)  # bob behind the same NAT, earlier
    for i in range(8):
        assert throttle.check(ATTACKER, f"user{i}", 1.0) is ALLOW
        throttle.failed(ATTACKER, f"user{i}", 1.0)
    assert throttle.check(ATTACKER, "user9", 1.5) == Refuse(ThrottleReason.BUSY, 0.5)
    assert throttle.check(ATTACKER, "bob", 1.5) is ALLOW
    throttle.succeeded(ATTACKER, "bob", 1.5)
    # The documented limit: someone who never logged in from there waits for a slot.
    assert isinstance(throttle.check(ATTACKER, "carol", 1.5), Refuse)


def test_failures_of_a_trusted_pair_end_its_trust() -> None:
    throttle = AuthThrottle(options(address={"max_in_flight": 2}))
    throttle.check(ATTACKER, "bob", 0.0)
    throttle.succeeded(ATTACKER, "bob", 0.0)
    for user in ("user0", "user1"):  # fill the untrusted slots
        assert throttle.check(ATTACKER, user, 0.0) is ALLOW
    now = 0.0
    for _ in range(5):  # free_failures guesses at bob from there
        assert throttle.check(ATTACKER, "bob", now) is ALLOW
        now += throttle.failed(ATTACKER, "bob", now).delay + 1
    assert throttle.check(ATTACKER, "bob", now) == Refuse(ThrottleReason.BUSY, 60.0 - now)


# ---------------------------------------------------------------- forgetting and forgiving


def test_failures_are_forgotten_after_a_window_without_failures() -> None:
    throttle = AuthThrottle(options(account={"free_failures": 1000}))
    fail_n(throttle, 8, ATTACKER, "alice", now=0.0)
    assert throttle.failed(ATTACKER, "alice", 599.0, reserved=False).delay > 0
    assert throttle.failed(ATTACKER, "alice", 1198.0, reserved=False).delay > 0
    assert throttle.failed(ATTACKER, "alice", 1198.0 + 600.0, reserved=False).address_failures == 1


def test_success_forgives_the_typos_of_that_address_against_that_account() -> None:
    throttle = AuthThrottle()
    fail_n(throttle, 7, ATTACKER, "alice", now=0.0)
    throttle.succeeded(ATTACKER, "alice", 30.0, reserved=False)
    assert throttle.failed(ATTACKER, "alice", 31.0, reserved=False).address_failures == 1


def test_success_on_own_account_does_not_reset_guesses_against_another() -> None:
    throttle = AuthThrottle()
    fail_n(throttle, 7, ATTACKER, "alice", now=0.0)
    throttle.succeeded(ATTACKER, "mallory", 1.0, reserved=False)  # the attacker's own account
    record = throttle.failed(ATTACKER, "alice", 2.0, reserved=False)
    assert (record.address_failures, record.delay) == (8, 4.0)


# ---------------------------------------------------------------- accounts


def test_unknown_and_existing_usernames_are_throttled_alike() -> None:
    """The throttle never asks whether an account exists: same counts, same holds."""
    for user in ("alice", "no-such-user"):
        throttle, now, records = AuthThrottle(), 0.0, []
        for _ in range(8):
            assert throttle.check(ATTACKER, user, now) is ALLOW
            records.append(throttle.failed(ATTACKER, user, now))
            now += records[-1].delay
        assert [(r.address_failures, r.account_failures, r.delay) for r in records] == [
            (1, 1, 0),
            (2, 2, 0),
            (3, 3, 0),
            (4, 4, 0),
            (5, 5, 0),
            (6, 6, 1),
            (7, 7, 2),
            (8, 8, 4),
        ]


def test_guesses_from_many_addresses_lengthen_the_hold_for_that_account() -> None:
    throttle = AuthThrottle()
    records = [throttle.failed(f"10.0.{i}.1", "alice", 0.0, reserved=False) for i in range(12)]
    assert all(r.address_failures == 1 for r in records)  # no address is throttled
    assert [r.delay for r in records] == [0] * 10 + [1, 2]
    assert records[10].events == (ThrottleEvent.ACCOUNT_THROTTLED,)
    assert records[11].events == (ThrottleEvent.ACCOUNT_ESCALATED,)
    assert throttle.failed("10.9.9.9", "alice", 1.0, reserved=False).delay == 4.0
    assert throttle.failed("10.9.9.9", "bob", 1.0, reserved=False).delay == 0.0


def test_the_same_name_on_two_virtual_hosts_is_two_accounts() -> None:
    throttle = AuthThrottle()
    target = throttle_account("alice", "a.example")
    for i in range(12):
        throttle.failed(f"10.0.{i}.1", target, 0.0, reserved=False)
    assert throttle.failed("10.9.9.9", target, 1.0, reserved=False).delay > 0
    other = throttle_account("alice", "b.example")
    assert throttle.failed("10.9.9.8", other, 1.0, reserved=False).delay == 0
    assert throttle_account(None, "a.example") is None


def test_account_hold_spares_an_address_the_owner_logged_in_from() -> None:
    throttle = AuthThrottle()
    throttle.check(OTHER, "alice", 0.0)
    throttle.succeeded(OTHER, "alice", 0.0)  # alice's usual address
    for i in range(30):
        throttle.failed(f"10.0.{i}.1", "alice", 10.0, reserved=False)
    assert throttle.failed(OTHER, "alice", 11.0, reserved=False).delay == 0  # a typo at home
    assert throttle.failed("192.0.2.1", "alice", 11.0, reserved=False).delay == 20.0


def test_account_hold_never_locks_the_owner_out() -> None:
    throttle = AuthThrottle()
    for i in range(10_000):
        throttle.failed(f"10.{i // 250}.{i % 250}.1", "alice", 0.0, reserved=False)
    assert throttle.check("192.0.2.1", "alice", 1.0) is ALLOW  # evaluated at once
    throttle.succeeded("192.0.2.1", "alice", 1.0)
    assert throttle.failed("192.0.2.1", "alice", 2.0, reserved=False).delay == 0  # now trusted


def test_account_failures_are_forgotten_after_the_account_window() -> None:
    throttle = AuthThrottle()
    for i in range(15):
        throttle.failed(f"10.0.{i}.1", "alice", 0.0, reserved=False)
    assert throttle.failed("192.0.2.1", "alice", 3599.0, reserved=False).delay > 0
    fresh = AuthThrottle()
    for i in range(15):
        fresh.failed(f"10.0.{i}.1", "alice", 0.0, reserved=False)
    assert fresh.failed("192.0.2.1", "alice", 3600.0, reserved=False).account_failures == 1


# ---------------------------------------------------------------- memory


def test_memory_stays_bounded_under_username_rotation() -> None:
    throttle = AuthThrottle(options(max_entries=10_000))
    for i in range(200_000):
        throttle.failed(f"10.{i % 7}.0.1", f"user{i}", float(i) / 1000, reserved=False)
    sizes = throttle.sizes()
    assert max(sizes.values()) <= 10_000
    assert throttle.stats.evictions >= 2 * (200_000 - 10_000)
    # The attackers' own address entries are touched every time, so they survive.
    assert throttle.failed("10.0.0.1", "x", 200.0).address_failures > 20


def test_an_address_keeps_no_more_slots_than_its_caps() -> None:
    throttle = AuthThrottle()
    for i in range(10_000):
        throttle.check(ATTACKER, f"user{i % 50}", float(i) / 100)
    assert throttle.in_flight(ATTACKER, 100.0) <= 8


def test_long_usernames_are_stored_as_short_keys() -> None:
    throttle = AuthThrottle()
    throttle.failed(ATTACKER, "a" * 100_000, 0.0)
    assert throttle.failed(ATTACKER, "a" * 100_000, 0.0).account_failures == 2
    assert throttle.failed(ATTACKER, "a" * 99_999 + "b", 0.0).account_failures == 1
    assert all(len(key) <= 64 for key in throttle._accounts)


def test_remembered_addresses_are_bounded_and_long_ones_not_kept() -> None:
    # Each address's place (its counter key, or exempt) is remembered for the calls of
    # a login; an address rotation must not grow that memory, and an address too long
    # to be a transport's is located every time instead of being kept.
    throttle = AuthThrottle()
    for i in range(20_000):
        throttle.check(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "alice", 0.0)
    assert len(throttle._places) <= 4096
    weird = "x" * 10_000  # not an address: counted under its first 64 characters
    fail_n(throttle, 5, weird, "bob", 0.0)
    assert throttle.failed(weird, "bob", 0.0, reserved=False).address_failures == 6
    assert weird not in throttle._places
    assert throttle.failed("x" * 64, "bob", 0.0, reserved=False).address_failures == 7


def test_prune_forgets_expired_entries() -> None:
    throttle = AuthThrottle()
    for i in range(100):
        throttle.failed(f"10.0.0.{i}", f"user{i}", 0.0)
    throttle.succeeded(OTHER, "alice", 0.0)
    assert throttle.prune(599.0) == 0
    assert throttle.prune(3599.0) == 100  # the address entries (window 600 s)
    assert throttle.prune(3600.0) == 200  # accounts and pairs (window 3600 s)
    assert throttle.sizes() == {"addresses": 0, "accounts": 0, "pairs": 0, "trusted": 1}


# ---------------------------------------------------------------- addresses and exemptions


def test_ipv6_addresses_in_one_slash_64_share_a_counter() -> None:
    throttle = AuthThrottle()
    for i in range(1, 6):
        throttle.failed(f"2001:db8:0:1::{i:x}", f"user{i}", 0.0, reserved=False)
    assert throttle.failed("2001:db8:0:1:ffff::1", "zed", 0.0, reserved=False).delay == 1.0
    assert throttle.failed("2001:db8:0:2::1", "zed", 0.0, reserved=False).delay == 0.0


def test_ipv4_mapped_ipv6_counts_as_ipv4() -> None:
    throttle = AuthThrottle()
    fail_n(throttle, 5, "::ffff:1.2.3.4", "alice", 0.0)
    assert throttle.failed(ATTACKER, "bob", 0.0, reserved=False).address_failures == 6


def test_loopback_is_throttled_unless_exempted() -> None:
    strict = AuthThrottle()
    fail_n(strict, 50, "127.0.0.1", "alice", 0.0)
    assert strict.failed("127.0.0.1", "alice", 0.0, reserved=False).delay == 20.0

    bench = AuthThrottle(options(exempt_loopback=True))
    records = [bench.failed(addr, "alice", 0.0) for addr in ("127.0.0.1", "::1") * 50]
    assert not any(r.counted or r.delay for r in records)
    assert all(bench.check("127.0.0.1", "alice", 0.0) is ALLOW for _ in range(100))
    assert bench.check("::1", "alice", 0.0) is ALLOW
    assert bench.stats.failures == 100  # still visible in metrics


def test_exempt_networks_are_never_counted() -> None:
    throttle = AuthThrottle(options(exempt_networks=["192.0.2.0/24", "2001:db8::/32"]))
    fail_n(throttle, 50, "192.0.2.7", "alice", 0.0)
    fail_n(throttle, 50, "2001:db8::7", "alice", 0.0)
    assert throttle.check("192.0.2.7", "alice", 0.0) is ALLOW
    assert throttle.sizes()["addresses"] == 0
    fail_n(throttle, 5, "198.51.100.1", "bob", 0.0)
    assert throttle.failed("198.51.100.1", "bob", 0.0, reserved=False).delay == 1.0


def test_connections_without_an_address_share_one_counter() -> None:
    throttle = AuthThrottle()
    fail_n(throttle, 5, None, "alice", 0.0)
    assert throttle.failed(None, None, 0.0, reserved=False).address_failures == 6


def test_disabled_throttle_allows_everything() -> None:
    throttle = AuthThrottle(options(enabled=False))
    fail_n(throttle, 100, ATTACKER, "alice", 0.0)
    assert all(throttle.check(ATTACKER, "alice", 0.0) is ALLOW for _ in range(100))
    assert throttle.failed(ATTACKER, "alice", 0.0).delay == 0
    assert throttle.sizes()["addresses"] == 0


# ---------------------------------------------------------------- what counts


@pytest.mark.parametrize(
    ("condition", "counts"),
    [
        (SaslFailureCondition.NOT_AUTHORIZED, True),
        (SaslFailureCondition.INVALID_AUTHZID, True),
        (SaslFailureCondition.ACCOUNT_DISABLED, True),
        (SaslFailureCondition.CREDENTIALS_EXPIRED, True),
        (SaslFailureCondition.TEMPORARY_AUTH_FAILURE, False),
        (SaslFailureCondition.MALFORMED_REQUEST, False),
        (SaslFailureCondition.INVALID_MECHANISM, False),
        (SaslFailureCondition.INCORRECT_ENCODING, False),
        (SaslFailureCondition.ABORTED, False),
        (SaslFailureCondition.ENCRYPTION_REQUIRED, False),
        (SaslFailureCondition.MECHANISM_TOO_WEAK, False),
    ],
)
def test_only_credential_failures_count_as_guesses(
    condition: SaslFailureCondition, counts: bool
) -> None:
    assert counts_as_guess(condition) is counts


# ---------------------------------------------------------------- registration


def test_register_denied_by_per_address_limit_with_retry_after() -> None:
    throttle = RegistrationThrottle()
    for t in range(5):
        assert throttle.attempt(ATTACKER, float(t * 60)) is ALLOW
        throttle.registered(ATTACKER, float(t * 60))
    assert throttle.attempt(ATTACKER, 600.0) == Refuse(ThrottleReason.REGISTRATION_ADDRESS, 3000.0)
    assert throttle.attempt(OTHER, 600.0) is ALLOW
    assert throttle.attempt(ATTACKER, 3600.0) is ALLOW  # the oldest left the window


def test_every_registration_attempt_counts_whatever_its_outcome() -> None:
    """Issue 9 item 7: attempts with a taken name (no account created) were never
    counted; now each attempt counts toward `attempts_per_address`."""
    throttle = RegistrationThrottle(options(registration={"attempts_per_address": 3}))
    for t in range(3):
        assert throttle.attempt(ATTACKER, float(t)) is ALLOW  # e.g. conflict each time
    assert throttle.attempt(ATTACKER, 10.0) == Refuse(ThrottleReason.REGISTRATION_ATTEMPTS, 3590.0)
    assert throttle.attempt(ATTACKER, 20.0) == Refuse(
        ThrottleReason.REGISTRATION_ATTEMPTS, 3580.0
    )  # refusals are not counted: the window is still the first three
    assert throttle.attempt(ATTACKER, 3600.0) is ALLOW
    assert throttle.attempt(OTHER, 10.0) is ALLOW
    assert (throttle.stats.attempts, throttle.stats.refusals) == (5, 2)


def test_register_denied_by_total_limit_across_addresses() -> None:
    throttle = RegistrationThrottle(options(registration={"total": 3, "total_period": 60}))
    for i in range(3):
        throttle.registered(f"10.0.0.{i}", 10.0)
    assert throttle.attempt("10.0.0.99", 20.0) == Refuse(ThrottleReason.REGISTRATION_TOTAL, 50.0)
    assert throttle.check("10.0.0.99", 20.0) == Refuse(ThrottleReason.REGISTRATION_TOTAL, 50.0)
    assert throttle.attempt("10.0.0.99", 70.0) is ALLOW
    assert throttle.stats.refusals == 2 and throttle.stats.registrations == 3


def test_registration_limits_of_zero_mean_unlimited() -> None:
    limits = {"per_address": 0, "total": 0, "attempts_per_address": 0}
    throttle = RegistrationThrottle(options(registration=limits))
    for _ in range(1000):
        assert throttle.attempt(ATTACKER, 0.0) is ALLOW
        throttle.registered(ATTACKER, 0.0)
    assert throttle.sizes()["addresses"] == 0


def test_registration_from_loopback_can_be_exempted() -> None:
    throttle = RegistrationThrottle(options(exempt_loopback=True))
    for _ in range(100):
        assert throttle.attempt("127.0.0.1", 0.0) is ALLOW
        throttle.registered("127.0.0.1", 0.0)


def test_registration_memory_is_bounded() -> None:
    throttle = RegistrationThrottle(options(max_entries=1000, registration={"total": 0}))
    for i in range(20_000):
        throttle.attempt(f"2001:db8:{i:x}::1", 0.0)
        throttle.registered(f"2001:db8:{i:x}::1", 0.0)
    assert throttle.sizes()["addresses"] == 1000


# ---------------------------------------------------------------- options


def test_defaults_are_documented_and_parse_from_toml() -> None:
    text = """
    enabled = true
    exempt_loopback = true
    exempt_networks = ["10.1.2.0/24"]
    [address]
    free_failures = 3
    max_in_flight = 4
    max_in_flight_per_account = 1
    [account]
    trusted_for = 86400
    [registration]
    per_address = 1
    attempts_per_address = 10
    """
    parsed = ThrottleOptions.model_validate(tomllib.loads(text))
    assert parsed.address.free_failures == 3 and parsed.registration.per_address == 1
    assert parsed.address.max_in_flight == 4 and parsed.registration.attempts_per_address == 10
    for model in (ThrottleOptions, AddressLimits, AccountLimits, RegistrationLimits):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no docstring"


@pytest.mark.parametrize(
    "bad",
    [
        {"address": {"free_failures": -1}},
        {"address": {"base_delay": 0}},
        {"address": {"base_delay": 10, "max_delay": 5}},
        {"address": {"max_in_flight": 0}},
        {"address": {"max_in_flight": 2, "max_in_flight_per_account": 3}},
        {"address": {"ban_after": 20}},  # no lockout any more (issue 9 item 13)
        {"account": {"max_delay": 0.5}},
        {"ipv6_prefix": 8},
        {"exempt_networks": ["not-a-network"]},
        {"registration": {"per_adress": 3}},
        {"lockout": True},
    ],
)
def test_bad_options_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ThrottleOptions.model_validate(bad)


def test_attempt_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AuthThrottle(attempt_ttl=0)
