"""The login gate (`chatgate.auth.gate`): one sequence of throttle, verdict, log and
count for every protocol.  The throttle is the real in-process `AuthThrottle`;
time is a fake clock the tests advance, so nothing sleeps.  `check_password`
runs against the real `InternalProvider` over a real SQLite database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from chatgate.auth.credentials import derive_all
from chatgate.auth.gate import (
    OTHER,
    Attempt,
    Decision,
    LocalLoginCounters,
    LoginCounters,
    LoginGate,
    Outcome,
    Proof,
    Reason,
)
from chatgate.auth.internal import AWAITING_APPROVAL, InternalProvider
from chatgate.auth.password_memo import PasswordMemo
from chatgate.auth.provider import Capability
from chatgate.auth.throttle import (
    AddressLimits,
    AuthThrottle,
    Refuse,
    ThrottleOptions,
    ThrottleReason,
    throttle_account,
)
from chatgate.storage.database import Database
from chatgate.storage.repositories.legacy import LegacySecrets

ADDRESS = "192.0.2.7"
ELSEWHERE = "198.51.100.9"
DOMAIN = "localhost"
HOLD = 2.0
PASSWORD = "correct horse battery"
NEWBIE_PASSWORD = "newbie-pw-1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_gate(
    *, slots: int = 8, per_account: int = 2, free_failures: int = 0
) -> tuple[LoginGate, AuthThrottle, Clock]:
    options = ThrottleOptions(
        address=AddressLimits(
            free_failures=free_failures,
            base_delay=HOLD,
            max_delay=HOLD,
            max_in_flight=slots,
            max_in_flight_per_account=per_account,
        )
    )
    throttle = AuthThrottle(options, attempt_ttl=30.0)
    clock = Clock()
    gate = LoginGate(throttle, mechanisms=("PLAIN", "SCRAM-SHA-1", "EXTERNAL"), clock=clock)
    return gate, throttle, clock


def entered(result: Attempt | Refuse) -> Attempt:
    assert isinstance(result, Attempt), result
    return result


def counts(gate: LoginGate) -> dict[tuple[str, str, Outcome], int]:
    return dict(gate.counters.snapshot())


# ---------------------------------------------------------------- throttling


def test_an_address_with_every_slot_taken_is_refused_and_counted() -> None:
    gate, throttle, _ = make_gate(slots=2, per_account=2)
    first = entered(gate.enter("xmpp", "PLAIN", "alice", DOMAIN, ADDRESS))
    entered(gate.enter("xmpp", "PLAIN", "bob", DOMAIN, ADDRESS))
    refused = gate.enter("nginx-rtmp", "PLAIN", "carol", DOMAIN, ADDRESS)
    assert isinstance(refused, Refuse)
    assert refused.reason is ThrottleReason.BUSY
    assert refused.retry_after == pytest.approx(30.0)  # the oldest slot's expiry
    assert counts(gate) == {("nginx-rtmp", "PLAIN", Outcome.THROTTLED): 1}
    # Another address is not affected; the first attempt's end frees a slot.
    entered(gate.enter("xmpp", "PLAIN", "carol", DOMAIN, ELSEWHERE))
    gate.succeeded(first, "alice")
    entered(gate.enter("xmpp", "PLAIN", "carol", DOMAIN, ADDRESS))
    assert throttle.in_flight(ADDRESS, 100.0) == 2


def test_a_wrong_guess_is_held_and_keeps_its_slot_until_the_hold_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate, throttle, clock = make_gate(slots=1, per_account=1)
    attempt = entered(gate.enter("xmpp", "PLAIN", "alice", DOMAIN, ADDRESS))
    with caplog.at_level(logging.INFO, logger="chatgate.auth.gate"):
        hold = gate.failed(attempt, "not-authorized")
    assert hold == HOLD
    assert throttle.stats.failures == 1
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (
        "authentication failed: mechanism=PLAIN condition=not-authorized"
        f" user=alice@{DOMAIN} address={ADDRESS}"
    )
    assert lines[1].startswith(
        f"brute-force protection: address={ADDRESS} user=alice@{DOMAIN} failures=1"
        " account_failures=1 hold=2.0s events=address-throttled"
    )
    refused = gate.enter("xmpp", "PLAIN", "alice", DOMAIN, ADDRESS)
    assert isinstance(refused, Refuse)
    assert refused.retry_after == pytest.approx(HOLD)
    clock.now += HOLD
    entered(gate.enter("xmpp", "PLAIN", "alice", DOMAIN, ADDRESS))
    assert counts(gate) == {
        ("xmpp", "PLAIN", Outcome.FAILED): 1,
        ("xmpp", "PLAIN", Outcome.THROTTLED): 1,
    }


def test_a_failure_that_is_no_guess_frees_its_slot_uncounted() -> None:
    gate, throttle, _ = make_gate(slots=1, per_account=1)
    attempt = entered(gate.enter("xmpp", "SCRAM-SHA-1", "alice", DOMAIN, ADDRESS))
    assert gate.failed(attempt, "aborted", guess=False) == 0.0
    assert throttle.stats.failures == 0
    assert throttle.in_flight(ADDRESS, 100.0) == 0
    entered(gate.enter("xmpp", "SCRAM-SHA-1", "alice", DOMAIN, ADDRESS))
    assert counts(gate) == {("xmpp", "SCRAM-SHA-1", Outcome.REJECTED): 1}


def test_a_failure_can_be_reported_under_the_name_the_mechanism_gives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SASL reports a failure under the failure's own username (None for a message
    that named nobody): logged as "-", and no account is charged."""
    gate, throttle, _ = make_gate()
    attempt = gate.unthrottled("xmpp", "PLAIN", None, DOMAIN, ADDRESS)
    with caplog.at_level(logging.INFO, logger="chatgate.auth.gate"):
        gate.failed(attempt, "malformed-request", guess=False, username=None)
    assert caplog.records[0].getMessage() == (
        f"authentication failed: mechanism=PLAIN condition=malformed-request user=- address={ADDRESS}"
    )
    named = entered(gate.enter("xmpp", "PLAIN", "alice", DOMAIN, ADDRESS))
    gate.failed(named, "not-authorized", username=None)
    assert throttle.stats.failures == 1
    assert throttle.in_flight(ADDRESS, 100.0) == 1  # its slot is held all the same


def test_each_attempt_settles_at_most_once() -> None:
    gate, throttle, _ = make_gate(slots=2, per_account=2, free_failures=5)
    attempt = entered(gate.enter("xmpp", "PLAIN", "alice", DOMAIN, ADDRESS))
    gate.failed(attempt, "not-authorized")
    assert gate.failed(attempt, "not-authorized") == 0.0
    gate.succeeded(attempt, "alice")
    gate.released(attempt)
    gate.parked(attempt)
    assert gate.client_left(attempt) is True
    assert throttle.stats.failures == 1
    assert counts(gate) == {("xmpp", "PLAIN", Outcome.FAILED): 1}

    other = entered(gate.enter("xmpp", "PLAIN", "bob", DOMAIN, ADDRESS))
    gate.succeeded(other, "bob")
    gate.failed(other, "not-authorized")
    assert throttle.stats.failures == 1
    assert counts(gate)[("xmpp", "PLAIN", Outcome.SUCCEEDED)] == 1


def test_a_parked_attempt_is_freed_when_its_client_leaves_but_one_being_evaluated_is_not() -> None:
    gate, throttle, _ = make_gate(slots=2, per_account=2)
    parked = entered(gate.enter("xmpp", "SCRAM-SHA-1", "alice", DOMAIN, ADDRESS))
    gate.parked(parked)
    assert gate.client_left(parked) is True
    assert throttle.in_flight(ADDRESS, 100.0) == 0

    busy = entered(gate.enter("xmpp", "PLAIN", "alice", DOMAIN, ADDRESS))
    assert gate.client_left(busy) is False
    assert not busy.settled
    # The evaluation ends after the client left: reported as a failure.
    assert gate.failed(busy, "not-authorized") == HOLD
    assert throttle.stats.failures == 1
    assert counts(gate) == {
        ("xmpp", "SCRAM-SHA-1", Outcome.LEFT): 1,
        ("xmpp", "PLAIN", Outcome.FAILED): 1,
    }


def test_certificate_identities_take_no_slot_and_anonymous_ones_earn_no_trust() -> None:
    gate, throttle, _ = make_gate(slots=1, per_account=1)
    entered(gate.enter("xmpp", "PLAIN", "bob", DOMAIN, ADDRESS))  # the only slot
    assert isinstance(gate.enter("xmpp", "PLAIN", "alice", DOMAIN, ADDRESS), Refuse)

    anonymous = gate.unthrottled("xmpp", "ANONYMOUS", "x1f3", DOMAIN, ADDRESS)
    gate.succeeded(anonymous, "x1f3", trust=False)
    assert isinstance(gate.enter("xmpp", "PLAIN", "x1f3", DOMAIN, ADDRESS), Refuse)

    # EXTERNAL: no slot needed, and the success makes (alice, address) trusted,
    # which has its own slots.
    certificate = gate.unthrottled("xmpp", "EXTERNAL", "alice", DOMAIN, ADDRESS)
    assert not certificate.reserved
    gate.succeeded(certificate, "alice")
    entered(gate.enter("xmpp", "PLAIN", "alice", DOMAIN, ADDRESS))
    assert throttle.in_flight(ADDRESS, 100.0) == 2
    snapshot = counts(gate)
    assert snapshot[("xmpp", "EXTERNAL", Outcome.SUCCEEDED)] == 1
    assert snapshot[("xmpp", OTHER, Outcome.SUCCEEDED)] == 1  # ANONYMOUS was not named


def test_an_attempt_is_keyed_as_the_throttle_keys_accounts() -> None:
    gate, _, _ = make_gate()
    named = gate.unthrottled("xmpp", "PLAIN", "alice", DOMAIN, ADDRESS)
    nameless = gate.unthrottled("xmpp", "PLAIN", None, DOMAIN, ADDRESS)
    assert named.account == throttle_account("alice", DOMAIN)
    assert nameless.account is None


def test_released_attempts_free_their_slot_without_a_failure() -> None:
    gate, throttle, _ = make_gate(slots=1, per_account=1)
    attempt = entered(gate.enter("xmpp", "PLAIN", "alice", DOMAIN, ADDRESS))
    gate.released(attempt)
    assert throttle.in_flight(ADDRESS, 100.0) == 0
    assert throttle.stats.failures == 0
    assert counts(gate) == {("xmpp", "PLAIN", Outcome.RELEASED): 1}


# ---------------------------------------------------------------- counters


def test_counted_mechanism_names_are_bounded() -> None:
    gate, _, _ = make_gate(slots=1000, per_account=1000)
    for i in range(50):
        attempt = entered(gate.enter("xmpp", f"X-PEER-{i}", f"u{i}", DOMAIN, ADDRESS))
        gate.failed(attempt, "invalid-mechanism", guess=False)
    gate.know("X-PLUGIN", "Y" * 65)
    plugin = entered(gate.enter("xmpp", "X-PLUGIN", "a", DOMAIN, ADDRESS))
    gate.released(plugin)
    long = entered(gate.enter("xmpp", "Y" * 65, "a", DOMAIN, ADDRESS))
    gate.released(long)
    assert counts(gate) == {
        ("xmpp", OTHER, Outcome.REJECTED): 50,
        ("xmpp", "X-PLUGIN", Outcome.RELEASED): 1,
        ("xmpp", OTHER, Outcome.RELEASED): 1,
    }
    assert long.mechanism == "Y" * 65  # logged as the client spelt it


def test_local_counters_implement_the_protocol_and_snapshot_is_a_copy() -> None:
    counters: LoginCounters = LocalLoginCounters()
    counters.increment("xmpp", "PLAIN", Outcome.FAILED)
    counters.increment("xmpp", "PLAIN", Outcome.FAILED)
    snapshot = counters.snapshot()
    assert snapshot == {("xmpp", "PLAIN", Outcome.FAILED): 2}
    counters.increment("nginx-rtmp", "PLAIN", Outcome.SUCCEEDED)
    assert snapshot == {("xmpp", "PLAIN", Outcome.FAILED): 2}
    gate = LoginGate(AuthThrottle(), counters)
    assert gate.counters is counters


# ---------------------------------------------------------------- check_password


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[InternalProvider]:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'chatgate.db'}")
    try:
        await db.accounts.create("alice", DOMAIN, derive_all(PASSWORD, hashes=("sha256",)))
        await db.pending_registrations.create_pending(
            "newbie", DOMAIN, derive_all(NEWBIE_PASSWORD, hashes=("sha256",)), LegacySecrets(), {}
        )
        internal = InternalProvider(db.accounts, cache_size=10, data_dir=tmp_path)
        await internal.warm()
        await internal.track_pending(db.pending_registrations)
        try:
            yield internal
        finally:
            await internal.close()
    finally:
        await db.close()


async def test_check_password_allows_the_right_password(
    provider: InternalProvider, caplog: pytest.LogCaptureFixture
) -> None:
    gate, throttle, _ = make_gate(slots=1, per_account=1)
    with caplog.at_level(logging.DEBUG):
        decision = await gate.check_password(
            provider, "nginx-rtmp", "alice", DOMAIN, PASSWORD, ADDRESS
        )
    assert decision == Decision(True, Reason.ALLOWED)
    assert throttle.in_flight(ADDRESS, 100.0) == 0
    assert counts(gate) == {("nginx-rtmp", "PLAIN", Outcome.SUCCEEDED): 1}
    assert f"alice@{DOMAIN} authenticated with PLAIN over nginx-rtmp from {ADDRESS}" in (
        caplog.text
    )
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("username", ["alice", "nobody"])
async def test_check_password_denies_a_wrong_password_or_unknown_user_alike(
    provider: InternalProvider, caplog: pytest.LogCaptureFixture, username: str
) -> None:
    gate, throttle, _ = make_gate()
    with caplog.at_level(logging.DEBUG):
        decision = await gate.check_password(
            provider, "nginx-rtmp", username, DOMAIN, "guess-123", ADDRESS
        )
    assert decision == Decision(False, Reason.WRONG_CREDENTIALS, HOLD, "not authorized")
    assert throttle.stats.failures == 1
    assert counts(gate) == {("nginx-rtmp", "PLAIN", Outcome.FAILED): 1}
    assert (
        "authentication failed: mechanism=PLAIN condition=not-authorized"
        f" user={username}@{DOMAIN} address={ADDRESS}"
    ) in caplog.text
    assert "guess-123" not in caplog.text
    for record in caplog.records:
        assert "guess-123" not in repr(record.args)


async def test_check_password_of_a_registration_awaiting_approval_is_no_guess(
    provider: InternalProvider,
) -> None:
    gate, throttle, _ = make_gate(slots=1, per_account=1)
    decision = await gate.check_password(
        provider, "nginx-rtmp", "newbie", DOMAIN, NEWBIE_PASSWORD, ADDRESS
    )
    assert decision == Decision(False, Reason.AWAITING_APPROVAL, text=AWAITING_APPROVAL)
    assert throttle.stats.failures == 0
    assert throttle.in_flight(ADDRESS, 100.0) == 0
    wrong = await gate.check_password(provider, "nginx-rtmp", "newbie", DOMAIN, "nope", ADDRESS)
    assert wrong.reason is Reason.WRONG_CREDENTIALS
    assert counts(gate) == {
        ("nginx-rtmp", "PLAIN", Outcome.RELEASED): 1,
        ("nginx-rtmp", "PLAIN", Outcome.FAILED): 1,
    }


async def test_check_password_refuses_unevaluated_when_every_slot_is_taken(
    provider: InternalProvider,
) -> None:
    gate, _, clock = make_gate(slots=1, per_account=1)
    held = await gate.check_password(provider, "srs", "alice", DOMAIN, "wrong", ADDRESS)
    assert held.hold == HOLD
    clock.now += 0.5
    decision = await gate.check_password(provider, "srs", "alice", DOMAIN, PASSWORD, ADDRESS)
    assert decision.allowed is False
    assert decision.reason is Reason.THROTTLED
    assert decision.hold == pytest.approx(HOLD - 0.5)
    clock.now += HOLD
    assert (await gate.check_password(provider, "srs", "alice", DOMAIN, PASSWORD, ADDRESS)).allowed


class BrokenProvider:
    """A provider whose back end is down."""

    offers: frozenset[Capability] = frozenset()

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        raise ConnectionError("directory unreachable")


async def test_a_provider_failure_is_unavailable_never_a_wrong_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate, throttle, _ = make_gate(slots=1, per_account=1)
    with caplog.at_level(logging.DEBUG):
        decision = await gate.check_password(
            BrokenProvider(),  # type: ignore[arg-type]
            "mediamtx",
            "alice",
            DOMAIN,
            PASSWORD,
            ADDRESS,
        )
    assert decision == Decision(False, Reason.UNAVAILABLE, text="try again later")
    assert throttle.stats.failures == 0
    assert throttle.in_flight(ADDRESS, 100.0) == 0  # the slot was released
    assert counts(gate) == {("mediamtx", "PLAIN", Outcome.RELEASED): 1}
    failures = [r for r in caplog.records if "credential provider failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert "directory unreachable" in caplog.text  # the traceback is there
    assert PASSWORD not in caplog.text


class SlowProvider:
    offers: frozenset[Capability] = frozenset()

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        self.started.set()
        await asyncio.Event().wait()
        return True


async def test_a_check_cancelled_mid_evaluation_counts_as_a_failure() -> None:
    gate, throttle, _ = make_gate(slots=1, per_account=1)
    slow = SlowProvider()
    task = asyncio.ensure_future(
        gate.check_password(slow, "nginx-rtmp", "alice", DOMAIN, PASSWORD, ADDRESS)  # type: ignore[arg-type]
    )
    await slow.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert throttle.stats.failures == 1
    assert throttle.in_flight(ADDRESS, 100.0) == 1  # held, as a failure's slot is
    assert counts(gate) == {("nginx-rtmp", "PLAIN", Outcome.FAILED): 1}


# --- check_secret: stream keys and tokens ------------------------------------------------


def proving(proof: Proof) -> Callable[[], Awaitable[Proof]]:
    async def check() -> Proof:
        return proof

    return check


async def test_check_secret_allows_a_valid_secret_and_trusts_the_account_it_proves() -> None:
    gate, throttle, _ = make_gate(slots=1, per_account=1)
    decision, proof = await gate.check_secret(
        "stream-hook", "stream-key", DOMAIN, ADDRESS, proving(Proof(True, "alice"))
    )
    assert decision.allowed and proof.username == "alice"
    assert throttle.in_flight(ADDRESS, 100.0) == 0  # the slot is free again
    assert counts(gate) == {("stream-hook", OTHER, Outcome.SUCCEEDED): 1}
    # a token without a user proves nobody: allowed, no trust recorded, slot freed
    decision, _ = await gate.check_secret(
        "stream-hook", "token", DOMAIN, ADDRESS, proving(Proof(True))
    )
    assert decision.allowed and throttle.in_flight(ADDRESS, 100.0) == 0


async def test_check_secret_counts_a_wrong_secret_as_a_guess_from_the_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate, throttle, clock = make_gate(slots=1, per_account=1)
    gate.know("stream-key")
    with caplog.at_level(logging.INFO, logger="chatgate.auth.gate"):
        decision, proof = await gate.check_secret(
            "stream-hook",
            "stream-key",
            DOMAIN,
            ADDRESS,
            proving(Proof(False, reason="unknown stream key")),
        )
    assert not decision.allowed and decision.reason is Reason.WRONG_CREDENTIALS
    assert decision.hold == HOLD and proof.reason == "unknown stream key"
    assert throttle.stats.failures == 1
    assert "mechanism=stream-key (unknown stream key)" in caplog.text
    # the address is held: the next guess is refused unevaluated, whatever it is
    evaluated = False

    async def check() -> Proof:
        nonlocal evaluated
        evaluated = True
        return Proof(True, "alice")

    decision, _ = await gate.check_secret("stream-hook", "stream-key", DOMAIN, ADDRESS, check)
    assert decision.reason is Reason.THROTTLED and not evaluated
    clock.now += HOLD
    decision, _ = await gate.check_secret("stream-hook", "stream-key", DOMAIN, ADDRESS, check)
    assert decision.allowed and evaluated
    assert counts(gate) == {
        ("stream-hook", "stream-key", Outcome.FAILED): 1,
        ("stream-hook", "stream-key", Outcome.THROTTLED): 1,
        ("stream-hook", "stream-key", Outcome.SUCCEEDED): 1,
    }


async def test_check_secret_whose_check_raises_is_unavailable_not_a_guess() -> None:
    gate, throttle, _ = make_gate(slots=1, per_account=1)

    async def broken() -> Proof:
        raise OSError("database is gone")

    decision, _ = await gate.check_secret("stream-hook", "stream-key", DOMAIN, ADDRESS, broken)
    assert decision.reason is Reason.UNAVAILABLE and not decision.allowed
    assert throttle.stats.failures == 0 and throttle.in_flight(ADDRESS, 100.0) == 0


# --- check_password with a memo of proven passwords -------------------------------------


class CountingProvider:
    """The real provider, counting how often it is asked (a memo hit must not ask)."""

    def __init__(self, inner: InternalProvider) -> None:
        self.inner = inner
        self.asked = 0
        self.offers = inner.offers

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def verify_password(self, username: str, domain: str, password: str) -> bool:
        self.asked += 1
        return await self.inner.verify_password(username, domain, password)


async def test_a_remembered_password_is_right_without_asking_the_provider(
    provider: InternalProvider,
) -> None:
    gate, throttle, clock = make_gate(slots=1, per_account=1)
    changed = [False]
    memo = PasswordMemo(lambda: changed.pop() if changed[0:1] == [True] else False)
    counting = CountingProvider(provider)

    async def check(password: str) -> Decision:
        return await gate.check_password(
            counting,  # type: ignore[arg-type]
            "stream-hook",
            "alice",
            DOMAIN,
            password,
            ADDRESS,
            memo=memo,
        )

    assert (await check(PASSWORD)).allowed and counting.asked == 1
    assert (await check(PASSWORD)).allowed and counting.asked == 1  # remembered
    assert len(memo) == 1
    # a wrong password is never answered from the memo: derived, counted, held
    assert not (await check("wrong")).allowed and counting.asked == 2
    clock.now += HOLD
    # credentials changed somewhere: everything is forgotten, the provider asked again
    changed[0] = True
    assert (await check(PASSWORD)).allowed and counting.asked == 3
    assert throttle.stats.failures == 1


def test_the_memo_is_bounded_and_keeps_no_password() -> None:
    memo = PasswordMemo(lambda: False, max_entries=2)
    for n in range(3):
        memo.remember("u", DOMAIN, f"secret-{n}")
    assert len(memo) == 2
    assert not memo.knows("u", DOMAIN, "secret-0")  # the oldest went first
    assert memo.knows("u", DOMAIN, "secret-2") and not memo.knows("v", DOMAIN, "secret-2")
    assert all(b"secret" not in digest for digest in memo._known)
