"""Shared brute-force and registration throttles: two nodes over one real redis-server
count together what one process would count alone."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from chatgate.auth.throttle import (
    ALLOW,
    AuthThrottle,
    Refuse,
    RegistrationThrottle,
    ThrottleOptions,
    ThrottleReason,
)
from chatgate.cluster.node import ClusterNode
from chatgate.cluster.throttle import ClusterAuthThrottle, ClusterRegistrationThrottle
from tests.redis_server import RedisServer
from tests.unit.cluster.test_node import options, wait_for

ATTACKER = "203.0.113.9"
HOME = "198.51.100.7"
THROTTLE = ThrottleOptions.model_validate(
    {
        "address": {"free_failures": 5, "base_delay": 1.0, "max_delay": 20.0},
        "account": {"free_failures": 8, "base_delay": 2.0, "max_delay": 20.0},
        "registration": {"per_address": 2, "attempts_per_address": 5, "total": 3},
    }
)


class Clock:
    """The time both nodes' throttles read (monotonic seconds, moved by the test)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[tuple[ClusterNode, ClusterNode]]:
    a = ClusterNode(options(redis_server), name="a")
    b = ClusterNode(options(redis_server), name="b")
    yield a, b
    await a.close()
    await b.close()


async def pair(
    nodes: tuple[ClusterNode, ClusterNode], clock: Clock
) -> tuple[ClusterAuthThrottle, ClusterAuthThrottle]:
    a, b = nodes
    ta = ClusterAuthThrottle(a, THROTTLE, clock=clock)
    tb = ClusterAuthThrottle(b, THROTTLE, clock=clock)
    await a.start()
    await b.start()
    return ta, tb


async def settle(*throttles: ClusterAuthThrottle | ClusterRegistrationThrottle) -> None:
    """Every event recorded so far is in Redis (and published: the totals follow)."""
    for throttle in throttles:
        await throttle.recorder.drain()


async def failed_on(
    throttle: ClusterAuthThrottle,
    other: ClusterAuthThrottle,
    clock: Clock,
    address: str,
    account: str | None,
) -> float:
    """One wrong guess on `throttle`, and `other` has heard of it: its hold."""
    seen = other.stats.failures
    record = throttle.failed(address, account, clock.now, reserved=False)
    await settle(throttle)
    expected = record.address_failures
    place = other.place(address)
    assert place is not None

    def learnt() -> bool:
        state = other._addresses.mapping.get(place)
        return state is not None and state.failures >= expected

    await wait_for(learnt)
    assert other.stats.failures == seen  # learning a failure is not making one
    return record.delay


async def test_failures_split_over_two_nodes_are_held_as_on_one(
    nodes: tuple[ClusterNode, ClusterNode],
) -> None:
    clock = Clock()
    ta, tb = await pair(nodes, clock)
    alone = AuthThrottle(THROTTLE)
    holds, alone_holds = [], []
    for i in range(9):
        throttle, other = (ta, tb) if i % 2 == 0 else (tb, ta)
        holds.append(await failed_on(throttle, other, clock, ATTACKER, f"user{i}"))
        alone_holds.append(alone.failed(ATTACKER, f"user{i}", clock.now, reserved=False).delay)
    assert holds == alone_holds
    assert holds[:5] == [0.0] * 5 and holds[5:] == [1.0, 2.0, 4.0, 8.0]


async def test_an_accounts_failures_from_many_addresses_and_nodes_count_together(
    nodes: tuple[ClusterNode, ClusterNode],
) -> None:
    clock = Clock()
    ta, tb = await pair(nodes, clock)
    holds = []
    for i in range(10):
        throttle, other = (ta, tb) if i % 2 == 0 else (tb, ta)
        # a different address each time: only the account's counter grows
        holds.append(await failed_on(throttle, other, clock, f"192.0.2.{i}", "alice@example.org"))
    assert holds[:8] == [0.0] * 8
    assert holds[8:] == [2.0, 4.0]


async def test_a_failure_held_on_one_node_takes_its_slot_on_the_other(
    nodes: tuple[ClusterNode, ClusterNode],
) -> None:
    clock = Clock()
    ta, tb = await pair(nodes, clock)
    for i in range(5):  # the free failures, from node a
        await failed_on(ta, tb, clock, ATTACKER, f"u{i}")
    # Every slot of the address on node a holds a failure (each is held now) ...
    for i in range(THROTTLE.address.max_in_flight):
        assert ta.check(ATTACKER, f"v{i}", clock.now) is ALLOW
        assert ta.failed(ATTACKER, f"v{i}", clock.now).delay > 0
    await settle(ta)
    await wait_for(lambda: tb.in_flight(ATTACKER, clock.now) == THROTTLE.address.max_in_flight)
    # ... so node b refuses the attacker unevaluated, as node a would.
    verdict = tb.check(ATTACKER, "w", clock.now)
    assert isinstance(verdict, Refuse) and verdict.reason is ThrottleReason.BUSY
    assert isinstance(ta.check(ATTACKER, "w", clock.now), Refuse)
    # A neighbour who logged in from there before keeps his own slots on both.
    clock.now += 20.0 * 2  # every hold is over
    assert tb.check(ATTACKER, "x", clock.now) is ALLOW


async def test_a_success_forgives_the_owners_typos_on_every_node(
    nodes: tuple[ClusterNode, ClusterNode],
) -> None:
    clock = Clock()
    ta, tb = await pair(nodes, clock)
    for i in range(4):
        await failed_on(ta if i % 2 else tb, tb if i % 2 else ta, clock, HOME, "bob@example.org")
    place = ta.place(HOME)
    assert place is not None
    assert tb._addresses.mapping[place].failures == 4
    ta.succeeded(HOME, "bob@example.org", clock.now, reserved=False)
    await settle(ta)
    await wait_for(lambda: tb._addresses.mapping[place].failures == 0)
    assert tb._accounts.mapping["bob@example.org"].failures == 0
    assert tb._is_trusted("bob@example.org", place, clock.now)
    # and in Redis: the next failure counts from 1 again, on either node
    record = tb.failed(HOME, "bob@example.org", clock.now, reserved=False)
    assert record.address_failures == 1
    await settle(tb)
    assert int(await nodes[0].redis.get(nodes[0].key("throttle", "a", place))) == 1


async def test_registrations_split_over_two_nodes_reach_the_limits_as_on_one(
    nodes: tuple[ClusterNode, ClusterNode],
) -> None:
    clock = Clock()
    a, b = nodes
    ra = ClusterRegistrationThrottle(a, THROTTLE, clock=clock)
    rb = ClusterRegistrationThrottle(b, THROTTLE, clock=clock)
    await a.start()
    await b.start()
    assert ra.attempt(ATTACKER, clock.now) is ALLOW
    ra.registered(ATTACKER, clock.now)
    await settle(ra)
    await wait_for(lambda: _registrations(rb, ATTACKER) == 1)
    assert rb.attempt(ATTACKER, clock.now) is ALLOW
    rb.registered(ATTACKER, clock.now)
    await settle(rb)
    await wait_for(lambda: _registrations(ra, ATTACKER) == 2)
    for throttle in (ra, rb):  # per_address = 2, from either node
        verdict = throttle.check(ATTACKER, clock.now)
        assert isinstance(verdict, Refuse)
        assert verdict.reason is ThrottleReason.REGISTRATION_ADDRESS
    # the total (3) counts every address on every node
    assert rb.attempt(HOME, clock.now) is ALLOW
    rb.registered(HOME, clock.now)
    await settle(rb)
    await wait_for(lambda: len(ra._total) == 3)
    verdict = ra.check("192.0.2.200", clock.now)
    assert isinstance(verdict, Refuse) and verdict.reason is ThrottleReason.REGISTRATION_TOTAL
    alone = RegistrationThrottle(THROTTLE)
    for address in (ATTACKER, ATTACKER, HOME):
        alone.registered(address, clock.now)
    assert isinstance(alone.check("192.0.2.200", clock.now), Refuse)


async def test_attempts_count_across_nodes(nodes: tuple[ClusterNode, ClusterNode]) -> None:
    clock = Clock()
    a, b = nodes
    ra = ClusterRegistrationThrottle(a, THROTTLE, clock=clock)
    rb = ClusterRegistrationThrottle(b, THROTTLE, clock=clock)
    await a.start()
    await b.start()
    for i in range(5):  # attempts_per_address = 5, alternating nodes
        throttle = (ra, rb)[i % 2]
        assert throttle.attempt(ATTACKER, clock.now) is ALLOW
        await settle(throttle)
        await wait_for(_attempts_seen((ra, rb)[1 - i % 2], ATTACKER, i + 1))
    verdict = rb.attempt(ATTACKER, clock.now)
    assert isinstance(verdict, Refuse) and verdict.reason is ThrottleReason.REGISTRATION_ATTEMPTS


async def test_failures_made_while_redis_is_away_count_everywhere_after(
    redis_server: RedisServer, nodes: tuple[ClusterNode, ClusterNode]
) -> None:
    clock = Clock()
    ta, tb = await pair(nodes, clock)
    redis_server.stop()
    await wait_for(lambda: not nodes[0].connected and not nodes[1].connected)
    holds = [ta.failed(ATTACKER, None, clock.now, reserved=False).delay for _ in range(6)]
    assert holds[5] == 1.0  # decided locally meanwhile
    await settle(ta)
    assert ta.recorder.pending == 6
    redis_server.start()
    place = tb.place(ATTACKER)
    assert place is not None

    def learnt() -> bool:
        state = tb._addresses.mapping.get(place)
        return state is not None and state.failures == 6

    await wait_for(learnt, timeout=10.0)
    assert ta.recorder.pending == 0
    assert tb.failed(ATTACKER, None, clock.now, reserved=False).delay == 2.0


def _registrations(throttle: ClusterRegistrationThrottle, address: str) -> int:
    place = throttle.place(address)
    entry = None if place is None else throttle._addresses.mapping.get(place)
    return 0 if entry is None else len(entry.times)


def _attempts_seen(
    throttle: ClusterRegistrationThrottle, address: str, count: int
) -> Callable[[], bool]:
    def seen() -> bool:
        place = throttle.place(address)
        entry = None if place is None else throttle._addresses.mapping.get(place)
        return entry is not None and entry.attempts is not None and len(entry.attempts) >= count

    return seen


async def test_windows_of_another_name_are_counted_apart(
    nodes: tuple[ClusterNode, ClusterNode],
) -> None:
    """Each host's ANONYMOUS login windows are registration windows under the host's
    name: shared with the same name on other nodes, never with the registrations."""
    clock = Clock()
    a, b = nodes
    registrations = ClusterRegistrationThrottle(a, THROTTLE, clock=clock)
    anonymous_a = ClusterRegistrationThrottle(
        a, THROTTLE, clock=clock, name="anonymous:anon.example"
    )
    anonymous_b = ClusterRegistrationThrottle(
        b, THROTTLE, clock=clock, name="anonymous:anon.example"
    )
    await a.start()
    await b.start()
    for _ in range(2):
        anonymous_a.registered(ATTACKER, clock.now)
    await settle(anonymous_a)
    await wait_for(lambda: _registrations(anonymous_b, ATTACKER) == 2)
    assert isinstance(anonymous_b.check(ATTACKER, clock.now), Refuse)
    assert _registrations(registrations, ATTACKER) == 0
    assert registrations.check(ATTACKER, clock.now) is ALLOW


async def test_a_node_that_starts_later_reads_the_counts_made_before(
    redis_server: RedisServer,
) -> None:
    clock = Clock()
    a = ClusterNode(options(redis_server), name="a")
    ta = ClusterAuthThrottle(a, THROTTLE, clock=clock)
    await a.start()
    late = ClusterNode(options(redis_server), name="late")
    try:
        for _ in range(5):  # the address's free failures, all on node a
            ta.failed(ATTACKER, "zoe@example.org", clock.now, reserved=False)
        ta.failed("192.0.2.77", "zoe@example.org", clock.now, reserved=False)
        await settle(ta)
        clock.now += 10.0
        # a node started now has heard none of them ...
        tl = ClusterAuthThrottle(late, THROTTLE, clock=clock)
        await late.start()
        assert tl.in_flight(ATTACKER, clock.now) == 0
        assert await tl.resync() == 3  # two addresses, one account
        # ... and holds the next failure as node a would
        assert tl.failed(ATTACKER, None, clock.now, reserved=False).delay == 1.0
        assert tl._accounts.mapping["zoe@example.org"].failures == 6
        # a counter keeps its age: one Redis forgets in 2 s is forgotten here in 2 s
        place = tl.place("192.0.2.77")
        assert place is not None
        await a.redis.pexpire(a.key("throttle", "a", place), 2000)
        fresh = ClusterAuthThrottle(late, THROTTLE, clock=clock)
        assert await fresh.resync() == 3
        assert fresh._addresses.mapping[place].failures == 1
        clock.now += 2.5
        assert fresh.failed("192.0.2.77", None, clock.now, reserved=False).address_failures == 1
        assert fresh.failed(ATTACKER, None, clock.now, reserved=False).address_failures == 7
    finally:
        await a.close()
        await late.close()


async def test_a_clean_success_is_a_trust_mark_for_every_node_and_nothing_in_redis(
    nodes: tuple[ClusterNode, ClusterNode],
) -> None:
    clock = Clock()
    ta, tb = await pair(nodes, clock)
    place = ta.place(HOME)
    assert place is not None
    for name in ("carol@example.org", "dan@example.org"):  # one turn, one publish
        ta.succeeded(HOME, name, clock.now, reserved=False)
    await wait_for(
        lambda: (
            tb._is_trusted("carol@example.org", place, clock.now)
            and tb._is_trusted("dan@example.org", place, clock.now)
        )
    )
    # Nothing to forgive: no script ran, no counter was made.
    assert await nodes[0].redis.keys(nodes[0].key("throttle", "*")) == []
