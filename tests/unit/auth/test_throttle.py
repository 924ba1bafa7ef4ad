"""Brute-force protection and registration limits (`chatgate.auth.throttle`).

Every test passes `now` explicitly: nothing sleeps.  A "client that plays
along" is simulated by advancing `now` by each `Delay` before answering.
"""

from __future__ import annotations

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
    Delay,
    Refuse,
    RegistrationLimits,
    RegistrationThrottle,
    ThrottleEvent,
    ThrottleOptions,
    ThrottleReason,
    backoff_delay,
    counts_as_guess,
    throttle_account,
)
from chatgate.xmpp.errors import SaslFailureCondition

ATTACKER = "1.2.3.4"
OTHER = "5.6.7.8"
ALICE_HOME = "198.51.100.7"


def options(**changes: object) -> ThrottleOptions:
    return ThrottleOptions.model_validate(changes)


def fail_n(throttle: AuthThrottle, n: int, address: str, user: str | None, now: float) -> None:
    for _ in range(n):
        throttle.failed(address, user, now)


def delays_of_sequential_guesser(throttle: AuthThrottle, attempts: int) -> list[float]:
    """A client that waits for each answer: the delay each attempt got (0 = none)."""
    now, seen = 0.0, []
    for _ in range(attempts):
        verdict = throttle.check(ATTACKER, "alice", now)
        assert not isinstance(verdict, Refuse)
        wait = verdict.seconds if isinstance(verdict, Delay) else 0.0
        seen.append(wait)
        now += wait
        throttle.failed(ATTACKER, "alice", now)
    return seen


# ---------------------------------------------------------------- backoff


def test_first_free_failures_are_not_delayed() -> None:
    throttle = AuthThrottle(options(account={"free_failures": 1000}))
    assert delays_of_sequential_guesser(throttle, 5) == [0.0] * 5


def test_delay_doubles_with_each_failure_then_caps_at_max_delay() -> None:
    throttle = AuthThrottle(options(account={"free_failures": 1000}, address={"ban_after": 0}))
    delays = delays_of_sequential_guesser(throttle, 13)
    assert delays == [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 20, 20, 20]


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


# ---------------------------------------------------------------- forgetting and forgiving


def test_failures_are_forgotten_after_a_window_without_failures() -> None:
    throttle = AuthThrottle(options(account={"free_failures": 1000}))
    fail_n(throttle, 8, ATTACKER, "alice", now=0.0)
    assert isinstance(throttle.check(ATTACKER, "alice", 599.0), Delay)
    throttle.failed(ATTACKER, "alice", 599.0)  # the window restarts at the last failure
    assert isinstance(throttle.check(ATTACKER, "alice", 1198.0), Delay)
    assert throttle.check(ATTACKER, "alice", 599.0 + 600.0) is ALLOW
    assert throttle.failed(ATTACKER, "alice", 1200.0).address_failures == 1


def test_success_forgives_the_typos_of_that_address_against_that_account() -> None:
    throttle = AuthThrottle()
    fail_n(throttle, 7, ATTACKER, "alice", now=0.0)
    assert isinstance(throttle.check(ATTACKER, "alice", 1.0), Delay)
    throttle.succeeded(ATTACKER, "alice", 30.0)
    assert throttle.check(ATTACKER, "alice", 31.0) is ALLOW
    assert throttle.failed(ATTACKER, "alice", 31.0).address_failures == 1


def test_success_on_own_account_does_not_reset_guesses_against_another() -> None:
    throttle = AuthThrottle()
    fail_n(throttle, 7, ATTACKER, "alice", now=0.0)
    throttle.succeeded(ATTACKER, "mallory", 1.0)  # the attacker's own valid account
    verdict = throttle.check(ATTACKER, "alice", 2.0)
    assert isinstance(verdict, Delay)
    assert verdict.reason is ThrottleReason.ADDRESS
    assert throttle.failed(ATTACKER, "alice", 2.0).address_failures == 8


# ---------------------------------------------------------------- the scenario


def test_brute_force_from_one_address_is_slowed_and_banned_while_bob_logs_in() -> None:
    """200 wrong passwords from 1.2.3.4 against alice: delays, then a ban; each step
    logged once; bob from 5.6.7.8 is never slowed, nor alice from her usual address."""
    throttle = AuthThrottle()
    throttle.check(ALICE_HOME, "alice", 0.0)
    throttle.succeeded(ALICE_HOME, "alice", 0.0)
    now, allowed, delayed, refused, logged = 0.0, 0, 0.0, 0, []
    for _ in range(200):
        verdict = throttle.check(ATTACKER, "alice", now)
        if isinstance(verdict, Refuse):
            assert verdict.reason is ThrottleReason.BANNED
            refused += 1
            now += 1.0
            continue
        if isinstance(verdict, Delay):
            delayed += verdict.seconds
            now += verdict.seconds
        allowed += 1
        record = throttle.failed(ATTACKER, "alice", now)
        if record.should_log:
            logged.append(record.events)
        assert throttle.check(OTHER, "bob", now) is ALLOW
        throttle.succeeded(OTHER, "bob", now)

    assert allowed == 20  # evaluated guesses before the ban (ejabberd's default)
    assert refused == 180
    assert delayed == 1 + 2 + 4 + 8 + 16 + 20 * 10
    assert [e for events in logged for e in events if e.name.startswith("ADDRESS")] == [
        ThrottleEvent.ADDRESS_THROTTLED,
        *[ThrottleEvent.ADDRESS_ESCALATED] * 5,  # 2, 4, 8, 16, 20 (capped: no more)
        ThrottleEvent.ADDRESS_BANNED,
    ]
    assert len(logged) <= 12  # a handful of lines for 200 attempts
    stats = throttle.stats
    assert (stats.failures, stats.refusals, stats.bans) == (20, 180, 1)
    assert stats.delays == 15 and stats.delay_seconds == delayed
    # alice herself: at full speed from home, slowed (never refused) from a new address.
    assert throttle.check(ALICE_HOME, "alice", now) is ALLOW
    assert throttle.check("203.0.113.9", "alice", now) == Delay(20.0, ThrottleReason.ACCOUNT)


def test_ban_refuses_until_it_expires() -> None:
    throttle = AuthThrottle(options(account={"free_failures": 1000}))
    record = None
    for _ in range(20):
        record = throttle.failed(ATTACKER, "alice", 100.0)
    assert record is not None and record.banned_until == 100.0 + 3600.0
    verdict = throttle.check(ATTACKER, "carol", 1000.0)
    assert verdict == Refuse(ThrottleReason.BANNED, 2700.0)
    assert throttle.check(ATTACKER, "carol", 3700.0) is ALLOW


def test_failures_resolving_during_a_ban_do_not_extend_or_relog_it() -> None:
    throttle = AuthThrottle()
    records = [throttle.failed(ATTACKER, "alice", float(t)) for t in range(25)]
    assert [r.banned_until for r in records if r.banned_until] == [19.0 + 3600.0]
    assert sum(ThrottleEvent.ADDRESS_BANNED in r.events for r in records) == 1
    assert throttle.stats.bans == 1


def test_ban_can_be_switched_off() -> None:
    throttle = AuthThrottle(options(address={"ban_after": 0}))
    fail_n(throttle, 500, ATTACKER, "alice", now=0.0)
    verdict = throttle.check(ATTACKER, "alice", 0.0)
    assert isinstance(verdict, Delay) and verdict.seconds == 20.0


# ---------------------------------------------------------------- accounts


def test_unknown_and_existing_usernames_are_throttled_alike() -> None:
    """The throttle never asks whether an account exists: same counts, same verdicts."""
    for user in ("alice", "no-such-user"):
        throttle = AuthThrottle()
        records = [throttle.failed(ATTACKER, user, 0.0) for _ in range(8)]
        assert [(r.address_failures, r.account_failures, r.delay) for r in records] == [
            (1, 1, 0),
            (2, 2, 0),
            (3, 3, 0),
            (4, 4, 0),
            (5, 5, 1),
            (6, 6, 2),
            (7, 7, 4),
            (8, 8, 8),
        ]
        assert throttle.check(ATTACKER, user, 0.0) == Delay(8.0, ThrottleReason.ADDRESS)


def test_guesses_from_many_addresses_delay_new_addresses_for_that_account() -> None:
    throttle = AuthThrottle()
    records = [throttle.failed(f"10.0.{i}.1", "alice", 0.0) for i in range(12)]
    assert all(r.address_failures == 1 for r in records)  # no address is throttled
    assert records[9].events == (ThrottleEvent.ACCOUNT_THROTTLED,)
    assert records[10].events == (ThrottleEvent.ACCOUNT_ESCALATED,)
    assert throttle.check("10.9.9.9", "alice", 1.0) == Delay(4.0, ThrottleReason.ACCOUNT)
    assert throttle.check("10.9.9.9", "bob", 1.0) is ALLOW


def test_the_same_name_on_two_virtual_hosts_is_two_accounts() -> None:
    throttle = AuthThrottle()
    target = throttle_account("alice", "a.example")
    for i in range(12):
        throttle.failed(f"10.0.{i}.1", target, 0.0)
    assert isinstance(throttle.check("10.9.9.9", target, 1.0), Delay)
    assert throttle.check("10.9.9.9", throttle_account("alice", "b.example"), 1.0) is ALLOW
    assert throttle_account(None, "a.example") is None


def test_account_delay_spares_an_address_the_owner_logged_in_from() -> None:
    throttle = AuthThrottle()
    throttle.check(OTHER, "alice", 0.0)
    throttle.succeeded(OTHER, "alice", 0.0)  # alice's usual address
    for i in range(30):
        throttle.failed(f"10.0.{i}.1", "alice", 10.0)
    assert throttle.check(OTHER, "alice", 11.0) is ALLOW
    assert isinstance(throttle.check("192.0.2.1", "alice", 11.0), Delay)


def test_account_delay_never_locks_the_owner_out() -> None:
    throttle = AuthThrottle()
    for i in range(10_000):
        throttle.failed(f"10.{i // 250}.{i % 250}.1", "alice", 0.0)
    verdict = throttle.check("192.0.2.1", "alice", 1.0)
    assert verdict == Delay(20.0, ThrottleReason.ACCOUNT)  # slow, but answered
    throttle.succeeded("192.0.2.1", "alice", 21.0)
    assert throttle.check("192.0.2.1", "alice", 22.0) is ALLOW


def test_account_failures_are_forgotten_after_the_account_window() -> None:
    throttle = AuthThrottle()
    for i in range(15):
        throttle.failed(f"10.0.{i}.1", "alice", 0.0)
    assert isinstance(throttle.check("192.0.2.1", "alice", 3599.0), Delay)
    assert throttle.check("192.0.2.1", "alice", 3600.0) is ALLOW


# ---------------------------------------------------------------- concurrency


def test_parallel_attempts_from_one_address_do_not_multiply_the_free_budget() -> None:
    """Once an address has failed, its attempts in flight count as possible failures,
    so opening many connections at once does not buy more free guesses."""
    throttle = AuthThrottle()
    assert throttle.check(ATTACKER, "user0", 0.0) is ALLOW
    throttle.failed(ATTACKER, "user0", 0.0)
    verdicts = [throttle.check(ATTACKER, f"user{i}", 0.0) for i in range(1, 101)]
    assert verdicts[:4] == [ALLOW] * 4
    assert [v.seconds for v in verdicts[4:8] if isinstance(v, Delay)] == [1, 3, 7, 15]
    assert all(isinstance(v, Refuse) and v.reason is ThrottleReason.BUSY for v in verdicts[8:])


def test_reservations_of_abandoned_attempts_expire() -> None:
    throttle = AuthThrottle(attempt_ttl=30.0)
    throttle.check(ATTACKER, "user0", 0.0)
    throttle.failed(ATTACKER, "user0", 0.0)
    for i in range(1, 5):
        assert throttle.check(ATTACKER, f"user{i}", 0.0) is ALLOW  # connections dropped
    assert isinstance(throttle.check(ATTACKER, "alice", 1.0), Delay)
    assert throttle.check(ATTACKER, "alice", 60.0) is ALLOW


def test_resolved_attempts_release_their_reservation() -> None:
    throttle = AuthThrottle()
    for _ in range(50):  # a busy but honest address: many logins, all good
        assert throttle.check(OTHER, "alice", 0.0) is ALLOW
        throttle.succeeded(OTHER, "alice", 0.0)


# ---------------------------------------------------------------- memory


def test_memory_stays_bounded_under_username_rotation() -> None:
    throttle = AuthThrottle(options(max_entries=10_000))
    for i in range(200_000):
        throttle.failed(f"10.{i % 7}.0.1", f"user{i}", float(i) / 1000)
    sizes = throttle.sizes()
    assert max(sizes.values()) <= 10_000
    assert throttle.stats.evictions >= 2 * (200_000 - 10_000)
    # The attackers' own address entries are touched every time, so they survive.
    assert throttle.failed("10.0.0.1", "x", 200.0).address_failures > 20


def test_long_usernames_are_stored_as_short_keys() -> None:
    throttle = AuthThrottle()
    throttle.failed(ATTACKER, "a" * 100_000, 0.0)
    assert throttle.failed(ATTACKER, "a" * 100_000, 0.0).account_failures == 2
    assert throttle.failed(ATTACKER, "a" * 99_999 + "b", 0.0).account_failures == 1
    assert all(len(key) <= 64 for key in throttle._accounts._data)


def test_prune_forgets_expired_entries() -> None:
    throttle = AuthThrottle()
    for i in range(100):
        throttle.failed(f"10.0.0.{i}", f"user{i}", 0.0)
    throttle.succeeded(OTHER, "alice", 0.0)
    assert throttle.prune(3599.0) == 100  # the address entries (window 600 s)
    assert throttle.prune(3600.0) == 200  # accounts and pairs (window 3600 s)
    assert throttle.sizes() == {"addresses": 0, "accounts": 0, "pairs": 0, "trusted": 1}


# ---------------------------------------------------------------- addresses and exemptions


def test_ipv6_addresses_in_one_slash_64_share_a_counter() -> None:
    throttle = AuthThrottle()
    for i in range(1, 6):
        throttle.failed(f"2001:db8:0:1::{i:x}", f"user{i}", 0.0)
    assert isinstance(throttle.check("2001:db8:0:1:ffff::1", "zed", 0.0), Delay)
    assert throttle.check("2001:db8:0:2::1", "zed", 0.0) is ALLOW


def test_ipv4_mapped_ipv6_counts_as_ipv4() -> None:
    throttle = AuthThrottle()
    fail_n(throttle, 5, "::ffff:1.2.3.4", "alice", 0.0)
    assert isinstance(throttle.check(ATTACKER, "bob", 0.0), Delay)


def test_loopback_is_throttled_unless_exempted() -> None:
    strict = AuthThrottle()
    fail_n(strict, 50, "127.0.0.1", "alice", 0.0)
    assert isinstance(strict.check("127.0.0.1", "alice", 0.0), Refuse)

    bench = AuthThrottle(options(exempt_loopback=True))
    records = [bench.failed(addr, "alice", 0.0) for addr in ("127.0.0.1", "::1") * 50]
    assert not any(r.counted for r in records)
    assert bench.check("127.0.0.1", "alice", 0.0) is ALLOW
    assert bench.check("::1", "alice", 0.0) is ALLOW
    assert bench.stats.failures == 100  # still visible in metrics


def test_exempt_networks_are_never_counted() -> None:
    throttle = AuthThrottle(options(exempt_networks=["192.0.2.0/24", "2001:db8::/32"]))
    fail_n(throttle, 50, "192.0.2.7", "alice", 0.0)
    fail_n(throttle, 50, "2001:db8::7", "alice", 0.0)
    assert throttle.check("192.0.2.7", "alice", 0.0) is ALLOW
    assert throttle.sizes()["addresses"] == 0
    fail_n(throttle, 5, "198.51.100.1", "bob", 0.0)
    assert isinstance(throttle.check("198.51.100.1", "bob", 0.0), Delay)


def test_connections_without_an_address_share_one_counter() -> None:
    throttle = AuthThrottle()
    fail_n(throttle, 5, None, "alice", 0.0)
    assert isinstance(throttle.check(None, None, 0.0), Delay)


def test_disabled_throttle_allows_everything() -> None:
    throttle = AuthThrottle(options(enabled=False))
    fail_n(throttle, 100, ATTACKER, "alice", 0.0)
    assert throttle.check(ATTACKER, "alice", 0.0) is ALLOW
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
        assert throttle.check(ATTACKER, float(t * 60)) is ALLOW
        throttle.registered(ATTACKER, float(t * 60))
    assert throttle.check(ATTACKER, 600.0) == Refuse(ThrottleReason.REGISTRATION_ADDRESS, 3000.0)
    assert throttle.check(OTHER, 600.0) is ALLOW
    assert throttle.check(ATTACKER, 3600.0) is ALLOW  # the oldest left the window


def test_register_denied_by_total_limit_across_addresses() -> None:
    throttle = RegistrationThrottle(options(registration={"total": 3, "total_period": 60}))
    for i in range(3):
        throttle.registered(f"10.0.0.{i}", 10.0)
    assert throttle.check("10.0.0.99", 20.0) == Refuse(ThrottleReason.REGISTRATION_TOTAL, 50.0)
    assert throttle.check("10.0.0.99", 70.0) is ALLOW
    assert throttle.stats.refusals == 1 and throttle.stats.registrations == 3


def test_registration_limits_of_zero_mean_unlimited() -> None:
    throttle = RegistrationThrottle(options(registration={"per_address": 0, "total": 0}))
    for _ in range(1000):
        throttle.registered(ATTACKER, 0.0)
    assert throttle.check(ATTACKER, 0.0) is ALLOW
    assert throttle.sizes()["addresses"] == 0


def test_registration_from_loopback_can_be_exempted() -> None:
    throttle = RegistrationThrottle(options(exempt_loopback=True))
    for _ in range(100):
        assert throttle.check("127.0.0.1", 0.0) is ALLOW
        throttle.registered("127.0.0.1", 0.0)


def test_registration_memory_is_bounded() -> None:
    throttle = RegistrationThrottle(options(max_entries=1000, registration={"total": 0}))
    for i in range(20_000):
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
    ban_after = 0
    [account]
    trusted_for = 86400
    [registration]
    per_address = 1
    """
    parsed = ThrottleOptions.model_validate(tomllib.loads(text))
    assert parsed.address.free_failures == 3 and parsed.registration.per_address == 1
    for model in (ThrottleOptions, AddressLimits, AccountLimits, RegistrationLimits):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no docstring"


@pytest.mark.parametrize(
    "bad",
    [
        {"address": {"free_failures": -1}},
        {"address": {"base_delay": 0}},
        {"address": {"base_delay": 10, "max_delay": 5}},
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


def test_sequential_retry_just_before_its_slot_is_delayed_not_refused() -> None:
    """A timer that fires a millisecond early must not turn a lone attacker's next
    attempt into a BUSY refusal (which would never be evaluated nor counted)."""
    opts = ThrottleOptions.model_validate(
        {
            "address": {"free_failures": 5, "base_delay": 0.01, "max_delay": 0.05, "ban_after": 0},
            "account": {"free_failures": 1000},
        }
    )
    throttle = AuthThrottle(opts, attempt_ttl=30)
    now = 100.0
    verdicts = []
    for _ in range(40):
        verdict = throttle.check("192.0.2.1", "victim", now)
        verdicts.append(verdict)
        if isinstance(verdict, Delay):
            now += verdict.seconds - 0.001  # the sleep returns a hair early
        throttle.failed("192.0.2.1", "victim", now)
    assert not any(isinstance(v, Refuse) for v in verdicts)
    assert all(isinstance(v, Delay) for v in verdicts[5:])


def test_a_wait_of_exactly_max_delay_is_not_refused_at_large_clock_values() -> None:
    """`now + delay - now` is not exactly `delay` when `now` is large (a monotonic clock
    after hours of uptime): that rounding must not refuse an unqueued attempt."""
    opts = ThrottleOptions.model_validate(
        {
            "address": {"free_failures": 0, "base_delay": 0.05, "max_delay": 0.05, "ban_after": 0},
            "account": {"free_failures": 1000},
        }
    )
    throttle = AuthThrottle(opts, attempt_ttl=30)
    now = 4007.181
    verdicts = []
    for _ in range(20):
        verdict = throttle.check("192.0.2.9", "victim", now)
        verdicts.append(verdict)
        assert not isinstance(verdict, Refuse), verdict
        if isinstance(verdict, Delay):
            now += verdict.seconds
        throttle.failed("192.0.2.9", "victim", now)
        now += 0.001
    assert all(isinstance(v, Delay) and v.seconds == pytest.approx(0.05) for v in verdicts[1:])


def test_many_parallel_good_logins_from_one_address_are_not_slowed() -> None:
    throttle = AuthThrottle()
    verdicts = [throttle.check("198.51.100.7", f"user{i}", 0.0) for i in range(200)]
    assert all(v == ALLOW for v in verdicts)
    for i in range(200):
        throttle.succeeded("198.51.100.7", f"user{i}", 0.01)
    assert throttle.check("198.51.100.7", "user0", 0.02) == ALLOW


def test_attempts_ended_without_a_verdict_release_their_reservation() -> None:
    throttle = AuthThrottle()
    throttle.check(ATTACKER, "user0", 0.0)
    throttle.failed(ATTACKER, "user0", 0.0)
    for _ in range(50):  # e.g. the provider is down: temporary-auth-failure each time
        assert throttle.check(ATTACKER, "alice", 0.0) is ALLOW
        throttle.abandoned(ATTACKER, 0.0)


def _delay_after_early_failure(reserved: bool) -> float:
    throttle = AuthThrottle()
    throttle.check(ATTACKER, "user0", 0.0)
    throttle.failed(ATTACKER, "user0", 0.0)
    for i in range(1, 5):
        assert throttle.check(ATTACKER, f"user{i}", 0.0) is ALLOW  # four in flight
    # A failure before any credentials were asked for (e.g. SCRAM's invalid-authzid):
    # it never passed `check`, so it must not free one of the four slots.
    throttle.failed(ATTACKER, None, 0.0, reserved=reserved)
    verdict = throttle.check(ATTACKER, "user9", 0.0)
    assert isinstance(verdict, Delay)
    return verdict.seconds


def test_a_failure_that_held_no_slot_does_not_free_another_attempts_slot() -> None:
    assert _delay_after_early_failure(reserved=False) > _delay_after_early_failure(reserved=True)
