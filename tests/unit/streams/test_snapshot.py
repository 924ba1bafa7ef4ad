"""The live registry's snapshot: `LocalLiveStreams.sessions/restore/version`,
`DatabaseLiveSnapshot` on a real SQLite file, and `SnapshotKeeper` (restore at
start, at most one save per interval, one more at stop)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Sequence

import pytest

from chatgate.storage.database import Database
from chatgate.storage.repositories.streams import LiveSessionRepository, LiveSessionRow
from chatgate.streams.live import (
    LiveLimits,
    LiveReason,
    LocalLiveStreams,
    Publication,
    Session,
    Viewing,
)
from chatgate.streams.snapshot import DatabaseLiveSnapshot, MemoryLiveSnapshot, SnapshotKeeper
from chatgate.streams.stores import LiveSnapshot

T0 = 1_700_000_000.0
ALICE = "alice@example.org"
BOB = "bob@example.org"
NODE = "nginx-1"


async def _registry() -> LocalLiveStreams:
    """alice publishes live/a (with a key), bob watches it, an anonymous viewer too."""
    live = LocalLiveStreams()
    assert (await live.try_publish("live/a", ALICE, "1", NODE, T0, credential="key:ab")).accepted
    assert (await live.play_started("live/a", BOB, "2", NODE, T0 + 1)).accepted
    assert (await live.play_started("live/a", None, "3", "srs-1", T0 + 2)).accepted
    return live


# -- the registry's side -----------------------------------------------------------


async def test_sessions_lists_everything_held_unconfirmed_included() -> None:
    live = await _registry()
    await live.restarted(T0 + 5)
    sessions = live.sessions()
    assert len(sessions) == 3
    assert {type(s) for s in sessions} == {Publication, Viewing}
    assert not any(s.confirmed for s in sessions)


async def test_version_moves_with_what_a_snapshot_would_see() -> None:
    live = LocalLiveStreams()
    v0 = live.version
    await live.try_publish("live/a", ALICE, "1", NODE, T0)
    v1 = live.version
    assert v1 > v0
    await live.try_publish("live/a", ALICE, "1", NODE, T0 + 30, renewal=True)
    assert live.version == v1  # a renewal's last_seen alone: no save needed
    await live.try_publish("live/a", ALICE, "1", NODE, T0 + 60, renewal=True, credential="k:1")
    assert live.version > v1  # its credential changed
    v2 = live.version
    await live.try_publish("live/a", BOB, "9", NODE, T0 + 61)  # refused: busy
    assert live.version == v2
    await live.play_started("live/a", BOB, "2", NODE, T0)
    v3 = live.version
    assert v3 > v2
    await live.play_started("live/a", BOB, "2", NODE, T0 + 30, renewal=True)
    assert live.version == v3
    await live.play_done("live/a", "2", NODE)
    await live.play_done("live/a", "2", NODE)  # a done without a start: nothing
    v4 = live.version
    assert v4 == v3 + 1
    await live.restarted(T0 + 100)
    assert live.version > v4
    v5 = live.version
    await live.try_publish("live/a", ALICE, "1", NODE, T0 + 101, renewal=True, credential="k:1")
    assert live.version > v5  # confirmed again
    await live.revoke(T0 + 102, user=ALICE)
    assert live.version > v5 + 1
    v6 = live.version
    await live.revoke(T0 + 103, user=ALICE)  # nothing left to revoke
    await live.expire(T0 + 104)
    assert live.version == v6


async def test_restored_sessions_are_unconfirmed_and_expire_without_a_callback() -> None:
    saved = (await _registry()).sessions()
    live = LocalLiveStreams(LiveLimits(unconfirmed_grace=120))
    now = T0 + 3600  # chatgate was down an hour
    assert live.restore(saved, now) == 3
    held = live.sessions()
    assert all(not s.confirmed and s.last_seen == now for s in held)
    assert {s.started_at for s in held} == {T0, T0 + 1, T0 + 2}
    assert await live.live() == []  # not listed until confirmed
    assert [s.stream for s in await live.live(include_unconfirmed=True)] == ["live/a"]
    assert live.counts() == (1, 2)
    # another publisher is refused while it may still be live ...
    refused = await live.try_publish("live/a", BOB, "7", NODE, now + 10)
    assert refused.reason is LiveReason.BUSY
    # ... and after the grace, with no callback, the sessions are gone
    ended = await live.expire(now + 121)
    assert len(ended) == 3
    assert live.counts() == (0, 0)


async def test_a_callback_confirms_a_restored_session() -> None:
    live = LocalLiveStreams()
    live.restore((await _registry()).sessions(), T0 + 10)
    renewed = await live.try_publish(
        "live/a", ALICE, "1", NODE, T0 + 20, renewal=True, credential="key:ab"
    )
    assert renewed.reason is LiveReason.RENEWED
    assert [(s.stream, s.confirmed) for s in await live.live()] == [("live/a", True)]
    assert await live.expire(T0 + 10 + 121) != []  # the viewers were not confirmed
    assert [s.stream for s in await live.live()] == ["live/a"]


async def test_the_same_user_may_publish_again_at_once() -> None:
    live = LocalLiveStreams()
    live.restore((await _registry()).sessions(), T0 + 10)
    verdict = await live.try_publish("live/a", ALICE, "44", NODE, T0 + 11)
    assert verdict.accepted and verdict.ended is not None and verdict.ended.client_id == "1"


async def test_an_unconfirmed_session_keeps_its_grace_over_another_restart() -> None:
    live = await _registry()
    await live.restarted(T0 + 100)  # first restart: grace begins at T0 + 100
    again = LocalLiveStreams(LiveLimits(unconfirmed_grace=120))
    again.restore(live.sessions(), T0 + 200)  # restarted again, 100 s later
    assert {s.last_seen for s in again.sessions()} == {T0 + 100}
    assert len(await again.expire(T0 + 221)) == 3  # not T0 + 321


async def test_restore_skips_what_it_cannot_hold() -> None:
    saved: list[Session] = [
        Publication("live/a", ALICE, "1", NODE, T0, T0),
        Publication("live/a", BOB, "2", NODE, T0, T0),  # a second publisher of live/a
        Publication("../etc", ALICE, "3", NODE, T0, T0),  # invalid stream name
        Publication("live/b", ALICE, "with space", NODE, T0, T0),  # invalid client id
        Viewing("live/a", BOB, "4", NODE, T0, float("nan")),
        Viewing("live/a", BOB, "5", NODE, T0, T0),
        Viewing("live/a", BOB, "5", NODE, T0, T0),  # the same viewing twice
        Viewing("live/c", BOB, "6", NODE, T0, T0),  # over max_viewers
        Publication("live/d", ALICE, "7", NODE, T0, T0),  # over max_streams
    ]
    live = LocalLiveStreams(LiveLimits(max_viewers=1, max_streams=1))
    assert live.restore(saved, T0 + 5) == 2
    assert sorted((type(s).__name__, s.client_id) for s in live.sessions()) == [
        ("Publication", "1"),
        ("Viewing", "5"),
    ]
    assert live.counts() == (1, 1)


async def test_restore_into_a_registry_that_has_the_session_keeps_the_live_one() -> None:
    live = LocalLiveStreams()
    await live.try_publish("live/a", BOB, "9", NODE, T0 + 50)
    assert live.restore([Publication("live/a", ALICE, "1", NODE, T0, T0)], T0 + 60) == 0
    assert [(s.publisher, s.confirmed) for s in live.sessions()] == [(BOB, True)]


async def test_restore_needs_finite_now() -> None:
    with pytest.raises(ValueError):
        LocalLiveStreams().restore([], float("inf"))


# -- the database's side -----------------------------------------------------------


async def test_the_snapshot_round_trips(db: Database) -> None:
    live = await _registry()
    await live.restarted(T0 + 5)  # unconfirmed ones too
    await live.try_publish("live/b", None, "8", "srs-1", T0 + 6)
    snapshot: LiveSnapshot = DatabaseLiveSnapshot(db.live_sessions)
    await snapshot.save(live.sessions())
    again = DatabaseLiveSnapshot(db.live_sessions)  # another process, or after a restart
    assert sorted(map(repr, await again.load())) == sorted(map(repr, live.sessions()))
    await snapshot.save([])
    assert await again.load() == []


class Spy(LiveSessionRepository):
    """The real repository, recording what each save writes."""

    def __init__(self, inner: LiveSessionRepository) -> None:
        self.__dict__.update(inner.__dict__)
        self.calls: list[tuple[str, int, int]] = []

    async def replace(self, rows: Sequence[LiveSessionRow]) -> None:
        self.calls.append(("replace", 0, len(rows)))
        await super().replace(rows)

    async def change(
        self, removed: Sequence[tuple[str, str, str, str]], added: Sequence[LiveSessionRow]
    ) -> None:
        self.calls.append(("change", len(removed), len(added)))
        await super().change(removed, added)


async def test_saves_write_only_the_difference(db: Database) -> None:
    spy = Spy(db.live_sessions)
    snapshot = DatabaseLiveSnapshot(spy)
    live = await _registry()
    await snapshot.save(live.sessions())
    await snapshot.save(live.sessions())  # nothing changed: nothing written
    await live.play_done("live/a", "2", NODE)
    await live.play_started("live/a", BOB, "20", NODE, T0 + 9)
    await snapshot.save(live.sessions())
    assert spy.calls == [("replace", 0, 3), ("change", 1, 1)]
    assert sorted(map(repr, await DatabaseLiveSnapshot(db.live_sessions).load())) == sorted(
        map(repr, live.sessions())
    )


async def test_after_a_load_saves_are_differences_too(db: Database) -> None:
    live = await _registry()
    await DatabaseLiveSnapshot(db.live_sessions).save(live.sessions())
    spy = Spy(db.live_sessions)
    snapshot = DatabaseLiveSnapshot(spy)
    restored = LocalLiveStreams()
    restored.restore(await snapshot.load(), T0 + 100)
    await snapshot.save(restored.sessions())
    assert spy.calls == [("change", 3, 3)]  # each became unconfirmed


async def test_a_failed_save_is_followed_by_a_whole_one(db: Database) -> None:
    spy = Spy(db.live_sessions)
    snapshot = DatabaseLiveSnapshot(spy)
    live = await _registry()
    await snapshot.save(live.sessions())

    async def broken(*_: object) -> None:
        raise OSError("disk full")

    spy.change = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await snapshot.save(live.sessions()[:1])
    del spy.change
    await snapshot.save(live.sessions()[:1])
    assert spy.calls[-1] == ("replace", 0, 1)
    assert len(await DatabaseLiveSnapshot(db.live_sessions).load()) == 1


# -- the keeper --------------------------------------------------------------------


class Counting:
    """A snapshot that counts saves, over a real one."""

    def __init__(self, inner: LiveSnapshot) -> None:
        self.inner = inner
        self.saves: list[float] = []

    async def save(self, sessions: Sequence[Session]) -> None:
        self.saves.append(time.monotonic())
        await self.inner.save(sessions)

    async def load(self) -> list[Session]:
        return await self.inner.load()


async def test_the_keeper_carries_the_registry_over_a_restart(db_url: str) -> None:
    first_db = await Database.open(db_url)
    try:
        live = LocalLiveStreams()
        keeper = SnapshotKeeper(live, DatabaseLiveSnapshot(first_db.live_sessions))
        assert await keeper.start() == 0
        await live.try_publish("live/a", ALICE, "1", NODE, T0, credential="key:ab")
        await live.play_started("live/a", BOB, "2", NODE, T0)
        await keeper.stop()  # well within its first interval: the stop saves
        assert keeper.saves == 1
    finally:
        await first_db.close()

    second_db = await Database.open(db_url)
    try:
        restarted = LocalLiveStreams()
        keeper = SnapshotKeeper(
            restarted, DatabaseLiveSnapshot(second_db.live_sessions), clock=lambda: T0 + 600
        )
        assert await keeper.start() == 2
        assert {(type(s).__name__, s.confirmed, s.last_seen) for s in restarted.sessions()} == {
            ("Publication", False, T0 + 600),
            ("Viewing", False, T0 + 600),
        }
        assert await restarted.live() == []
        await keeper.stop()
        # what the stop saved is the unconfirmed state
        saved = await DatabaseLiveSnapshot(second_db.live_sessions).load()
        assert not any(s.confirmed for s in saved)
    finally:
        await second_db.close()


async def test_the_keeper_saves_only_when_changed() -> None:
    live = LocalLiveStreams()
    snapshot = Counting(MemoryLiveSnapshot())
    keeper = SnapshotKeeper(live, snapshot, interval=3600)
    await keeper.start()
    assert not await keeper.save()  # restored nothing, changed nothing
    await live.try_publish("live/a", ALICE, "1", NODE, T0)
    assert await keeper.save()
    assert not await keeper.save()
    await live.try_publish("live/a", ALICE, "1", NODE, T0 + 30, renewal=True)
    assert not await keeper.save()  # a renewal alone
    await keeper.stop()
    assert len(snapshot.saves) == 1
    # saved as it started: a confirmed session's last_seen is `now` when restored anyway
    assert [s.last_seen for s in await snapshot.load()] == [T0]


async def test_the_keeper_saves_at_most_once_per_interval(db: Database) -> None:
    live = LocalLiveStreams()
    snapshot = Counting(DatabaseLiveSnapshot(db.live_sessions))
    interval = 0.1
    keeper = SnapshotKeeper(live, snapshot, interval=interval)
    await keeper.start()
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 0.55:  # a storm of hooks: ~a thousand changes
        n += 1
        await live.play_started("live/a", BOB, str(n % 50), NODE, T0 + n)
        await live.play_done("live/a", str((n + 25) % 50), NODE)
        await asyncio.sleep(0)
    assert n > 100
    running_saves = list(snapshot.saves)
    await keeper.stop()
    assert 2 <= len(running_saves) <= 6  # 0.55 s at 0.1 s: five ticks (six with jitter)
    gaps = [b - a for a, b in itertools.pairwise(running_saves)]
    assert min(gaps) >= interval * 0.9
    assert len(snapshot.saves) == len(running_saves) + 1  # and one at stop
    saved = await DatabaseLiveSnapshot(db.live_sessions).load()
    # the same sessions; `last_seen` may be older in the snapshot, since a renewal
    # that only moves it is no change worth a write (`LocalLiveStreams.version`)
    assert sorted(map(repr, map(_without_last_seen, saved))) == sorted(
        map(repr, map(_without_last_seen, live.sessions()))
    )


def _without_last_seen(session: Session) -> Session:
    return dataclasses.replace(session, last_seen=0.0)


async def test_a_failing_snapshot_does_not_stop_the_keeper(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Flaky(MemoryLiveSnapshot):
        failures = 2

        async def save(self, sessions: Sequence[Session]) -> None:
            if self.failures:
                self.failures -= 1
                raise OSError("database locked")
            await super().save(sessions)

    live = LocalLiveStreams()
    snapshot = Flaky()
    keeper = SnapshotKeeper(live, snapshot, interval=0.02)
    await keeper.start()
    await live.try_publish("live/a", ALICE, "1", NODE, T0)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if await snapshot.load():
            break
    await keeper.stop()
    assert await snapshot.load() == live.sessions()
    assert sum("save failed" in r.getMessage() for r in caplog.records) == 1  # once, not per try


async def test_an_unreadable_snapshot_starts_an_empty_registry() -> None:
    class Unreadable(MemoryLiveSnapshot):
        async def load(self) -> list[Session]:
            raise OSError("no such table")

    live = LocalLiveStreams()
    keeper = SnapshotKeeper(live, Unreadable())
    assert await keeper.start() == 0
    await keeper.stop()
    assert live.sessions() == []


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SnapshotKeeper(LocalLiveStreams(), MemoryLiveSnapshot(), interval=0)


class Held:
    """A snapshot whose save waits until released, as a slow database write does."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.finished = 0
        self.cancelled = 0

    async def save(self, sessions: Sequence[Session]) -> None:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1

    async def load(self) -> list[Session]:
        return []


async def test_stop_lets_a_save_under_way_finish_before_the_last_one() -> None:
    """Cut short inside its transaction, a save would leave its connection holding
    SQLite's write lock, and the last save would wait for it in vain (seen under
    load as "database is locked" at stop)."""
    live = LocalLiveStreams()
    snapshot = Held()
    keeper = SnapshotKeeper(live, snapshot, interval=0.01)
    await keeper.start()
    await live.play_started("live/a", BOB, "1", NODE, T0)
    await asyncio.wait_for(snapshot.started.wait(), 5)
    stopping = asyncio.ensure_future(keeper.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waiting for the save under way, not cancelling it
    await live.play_started("live/a", BOB, "2", NODE, T0)  # a change the last save takes
    snapshot.release.set()
    await asyncio.wait_for(stopping, 5)
    assert snapshot.cancelled == 0
    assert snapshot.finished == 2  # the interval's save, then the last one
