"""`ServerStats` over a real server context (tests/unit/modules/wire.py): the real
connection driver, negotiation, SASL, router and offline store, driven by client
text; each figure is read before and after the action that must move it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatgate.administration.stats import TRANSPORTS, ServerStats
from chatgate.streams.adapters.base import Credentials, HookAction, Question
from chatgate.streams.options import StreamsOptions
from chatgate.streams.service import StreamService
from chatgate.xmpp.session import STANZAS
from tests.unit.modules.wire import Server, Wire, plain


class FakeClock:
    """A monotonic clock the test moves (only for the rates and the cache)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = await Server.start(tmp_path, {})
    try:
        await srv.add_user("alice", "wonderland")
        await srv.add_user("bob", "builder")
        yield srv
    finally:
        await srv.stop()


def stats_of(srv: Server, **kw: object) -> ServerStats:
    return ServerStats(srv.ctx, snapshot_ttl=0, **kw)  # type: ignore[arg-type]


async def presence(wire: Wire) -> None:
    await wire.send("<presence/>")


async def test_connections_and_sessions_by_transport(server: Server) -> None:
    stats = stats_of(server)
    before = stats.snapshot()
    assert set(TRANSPORTS) <= set(before.connections)
    assert before.connections_total == 0 and before.sessions_total == 0

    alice = server.connect(tls=True)  # transport "tls"
    await alice.login_plain("alice", "wonderland")
    waiting = server.connect(tls=False, require_tls=False)  # transport "tcp", not logged in
    await waiting.open()
    now = stats.snapshot()
    assert now.connections["tls"] == 1 and now.sessions["tls"] == 1
    assert now.connections["tcp"] == 1 and now.sessions["tcp"] == 0
    assert now.connections["websocket"] == now.connections["bosh"] == 0

    alice.conn.close_stream()
    waiting.conn.close_stream()
    await alice.settle()
    after = stats.snapshot()
    assert after.connections_total == 0 and after.sessions_total == 0


async def test_logins_by_protocol_mechanism_and_outcome(server: Server) -> None:
    stats = stats_of(server)
    succeeded = ("xmpp", "PLAIN", "succeeded")
    failed = ("xmpp", "PLAIN", "failed")
    before = stats.snapshot().logins
    await server.connect().login_plain("alice", "wonderland")
    wrong = server.connect()
    await wrong.open()
    out = await wrong.send(plain("alice", "not-her-password"))
    assert "not-authorized" in out
    after = stats.snapshot().logins
    assert after[succeeded] == before.get(succeeded, 0) + 1
    assert after[failed] == before.get(failed, 0) + 1


async def test_stanzas_in_and_out_and_their_rates(server: Server) -> None:
    clock = FakeClock()
    stats = stats_of(server, monotonic=clock)
    alice = server.connect()
    bob = server.connect()
    await alice.login_plain("alice", "wonderland", "a")
    await bob.login_plain("bob", "builder", "b")
    await presence(bob)  # available: a bare-JID message reaches it
    first = stats.take_sample()
    start = stats.snapshot()

    for n in range(4):
        await alice.send(
            f"<message to='bob@localhost' type='chat' id='m{n}'><body>hi</body></message>"
        )
    out = bob.transport.out.decode()
    assert out.count("<body>hi</body>") == 4
    now = stats.snapshot()
    assert now.stanzas_received == start.stanzas_received + 4
    assert now.stanzas_sent >= start.stanzas_sent + 4  # each delivered copy

    clock.now += 2.0
    sample = stats.take_sample()
    assert sample.stanzas_received_per_second == pytest.approx(4 / 2.0)
    assert sample.stanzas_sent_per_second >= 4 / 2.0
    assert sample.sessions == 2 and sample.connections == 2
    assert stats.snapshot().stanzas_received_per_second == pytest.approx(2.0)
    assert stats.series() == [first, sample]
    assert STANZAS.received >= now.stanzas_received  # the process's own counts


async def test_an_iq_answered_by_the_server_counts_in_and_out(server: Server) -> None:
    stats = stats_of(server)
    alice = server.connect()
    await alice.login_plain("alice", "wonderland")
    before = stats.snapshot()
    out = await alice.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
    assert 'id="r1"' in out or "id='r1'" in out
    after = stats.snapshot()
    assert after.stanzas_received == before.stanzas_received + 1
    assert after.stanzas_sent == before.stanzas_sent + 1


async def test_offline_census_counts_queues(server: Server) -> None:
    stats = stats_of(server)
    assert stats.snapshot().offline is None  # never counted: no false zero
    empty = await stats.refresh_offline()
    assert (empty.messages, empty.accounts, empty.largest_queue) == (0, 0, 0)

    await server.add_user("carol", "secret-carol")
    alice = server.connect()
    await alice.login_plain("alice", "wonderland")
    for n in range(3):
        await alice.send(f"<message to='bob@localhost' type='chat'><body>b{n}</body></message>")
    await alice.send("<message to='carol@localhost' type='chat'><body>c</body></message>")
    totals = await stats.refresh_offline()
    assert totals.messages == 4
    assert totals.accounts == 2
    assert totals.largest_queue == 3
    assert totals.bytes > 0
    assert stats.snapshot().offline == totals


async def test_series_is_bounded(server: Server) -> None:
    stats = stats_of(server, history=3)
    samples = [stats.take_sample() for _ in range(5)]
    assert stats.series() == samples[-3:]


async def test_snapshot_is_cached_for_its_ttl(server: Server) -> None:
    clock = FakeClock()
    stats = ServerStats(server.ctx, snapshot_ttl=1.0, monotonic=clock)
    first = stats.snapshot()
    alice = server.connect()
    await alice.open()
    assert stats.snapshot() is first  # a scrape storm walks the connections once a second
    clock.now += 1.0
    assert stats.snapshot().connections_total == 1


async def test_event_loop_lag_is_measured_by_the_background_task(server: Server) -> None:
    stats = stats_of(server, lag_interval=0.02, sample_interval=0.05)
    await stats.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # the loop is blocked: the measuring sleep wakes late
        for _ in range(100):
            await asyncio.sleep(0.02)
            if stats.snapshot().event_loop_lag_max_seconds >= 0.15 or any(
                s.event_loop_lag_max_seconds >= 0.15 for s in stats.series()
            ):
                break
        lags = [s.event_loop_lag_max_seconds for s in stats.series()]
        assert max([*lags, stats.snapshot().event_loop_lag_max_seconds]) >= 0.15
        assert stats.snapshot().offline is not None  # the task counted the store at start
    finally:
        await stats.close()
    assert stats._task is None


async def test_stream_decisions_when_the_authority_is_on(server: Server, tmp_path: Path) -> None:
    stats = stats_of(server)
    assert stats.snapshot().stream_decisions is None
    ctx = server.ctx
    data_dir = tmp_path / "streams"
    data_dir.mkdir()
    service = await StreamService.open(
        StreamsOptions(),
        domain="localhost",
        db=ctx.db,
        data_dir=data_dir,
        gate=ctx.login_gate,
        provider=ctx.provider,
    )
    ctx.streams = service
    try:
        question = Question("nginx-rtmp", HookAction.ADMIN, None, Credentials.none())
        answer = await service.authority.answer(question)
        assert not answer.verdict.allowed
        decisions = stats.snapshot().stream_decisions
        assert decisions is not None
        key = ("nginx-rtmp", HookAction.ADMIN.value, answer.verdict.kind.value)
        assert decisions[key] == 1
    finally:
        ctx.streams = None
        await service.close()


async def test_throttle_figures_move_with_refusals(tmp_path: Path) -> None:
    held = {"address": {"free_failures": 0, "base_delay": 0.2, "max_delay": 0.2}}
    srv = await Server.start(tmp_path, {}, auth={"throttle": held})
    try:
        await srv.add_user("alice", "wonderland")
        stats = stats_of(srv)
        before = stats.snapshot().throttle
        wire = srv.connect()
        await wire.open()
        await wire.send(plain("alice", "wrong"))  # held 0.2 s, then answered
        after = stats.snapshot().throttle
        assert after.held_failures == before.held_failures + 1
        assert after.held_seconds == pytest.approx(before.held_seconds + 0.2)
        assert after.tracked_addresses is not None and after.tracked_addresses >= 1
    finally:
        await srv.stop()
