"""The live registry (`chatgate.streams.live`): one publisher per stream, paired
viewer counts, bounds, revocation and the restart rule.  Time is passed in."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatgate.streams.live import (
    MAX_CLIENT_ID,
    LiveLimits,
    LiveReason,
    LiveStream,
    LiveStreams,
    LocalLiveStreams,
    PlayVerdict,
    Publication,
    PublishVerdict,
    Viewing,
)

T0 = 1_700_000_000.0
ALICE = "alice@example.org"
BOB = "bob@example.org"
NODE = "nginx-1"


Make = Callable[..., LiveStreams]


@pytest.fixture
def make() -> Make:
    """A fresh, empty registry for the given `LiveLimits` (the in-process one here;
    `tests/unit/cluster/test_live_streams.py` runs these tests on Redis's)."""
    return LocalLiveStreams


async def counts(live: LiveStreams) -> tuple[int, int]:
    """(streams, viewers) held, unconfirmed included, whichever implementation."""
    result = live.counts()  # type: ignore[attr-defined]
    return tuple(await result) if inspect.isawaitable(result) else result


def test_local_registry_implements_the_protocol() -> None:
    registry: LiveStreams = LocalLiveStreams()
    assert registry is not None


# -- publishing ---------------------------------------------------------------------


async def test_first_publisher_starts_and_is_listed(make: Make) -> None:
    live = make()
    verdict = await live.try_publish("live/alice", ALICE, "6", NODE, T0)
    assert verdict == PublishVerdict(True, LiveReason.STARTED)
    assert await live.live() == [LiveStream("live/alice", ALICE, "6", NODE, T0, T0, True, 0)]


async def test_second_publisher_is_refused_while_the_first_is_live(make: Make) -> None:
    live = make()
    await live.try_publish("live/alice", ALICE, "6", NODE, T0)
    assert await live.try_publish("live/alice", BOB, "7", NODE, T0 + 1) == PublishVerdict(
        False, LiveReason.BUSY
    )
    # Same user, other connection, takeover off (the default): refused too.
    assert (await live.try_publish("live/alice", ALICE, "8", NODE, T0 + 1)).reason is (
        LiveReason.BUSY
    )
    # The same client id on another media server is another client.
    assert (await live.try_publish("live/alice", ALICE, "6", "nginx-2", T0 + 1)).reason is (
        LiveReason.BUSY
    )
    # Anonymous publishers are never "the same user".
    anon = make(LiveLimits(takeover=True))
    await anon.try_publish("live/x", None, "1", NODE, T0)
    assert (await anon.try_publish("live/x", None, "2", NODE, T0)).reason is LiveReason.BUSY
    rows = await live.live()
    assert [(r.publisher, r.client_id) for r in rows] == [(ALICE, "6")]


async def test_publish_done_frees_the_stream(make: Make) -> None:
    live = make()
    await live.try_publish("live/alice", ALICE, "6", NODE, T0)
    ended = await live.publish_done("live/alice", "6", NODE)
    assert ended == Publication("live/alice", ALICE, "6", NODE, T0, T0)
    assert await live.live() == []
    assert (await counts(live)) == (0, 0)
    assert (await live.try_publish("live/alice", BOB, "7", NODE, T0 + 2)).accepted


async def test_publish_done_of_another_client_is_ignored(make: Make) -> None:
    live = make()
    await live.try_publish("live/alice", ALICE, "6", NODE, T0)
    assert await live.publish_done("live/alice", "7", NODE) is None  # refused second publisher
    assert await live.publish_done("live/alice", "6", "nginx-2") is None
    assert await live.publish_done("live/bob", "6", NODE) is None
    assert await live.publish_done("live/alice", "6\0", NODE) is None
    assert len(await live.live()) == 1


async def test_repeated_start_of_the_same_session_is_a_renewal(make: Make) -> None:
    live = make()
    await live.try_publish("live/alice", ALICE, "6", NODE, T0)
    verdict = await live.try_publish("live/alice", ALICE, "6", NODE, T0 + 30, renewal=True)
    assert verdict == PublishVerdict(True, LiveReason.RENEWED)
    (row,) = await live.live()
    assert (row.started_at, row.last_seen) == (T0, T0 + 30)
    # Same client, another identity: not the same session.
    assert (await live.try_publish("live/alice", BOB, "6", NODE, T0 + 31)).reason is (
        LiveReason.BUSY
    )


async def test_takeover_by_the_same_user_when_configured(make: Make) -> None:
    live = make(LiveLimits(takeover=True))
    await live.try_publish("live/alice", ALICE, "6", NODE, T0, credential="key-1")
    verdict = await live.try_publish("live/alice", ALICE, "9", NODE, T0 + 5)
    assert verdict == PublishVerdict(
        True,
        LiveReason.TAKEN_OVER,
        Publication("live/alice", ALICE, "6", NODE, T0, T0, True, "key-1"),
    )
    (row,) = await live.live()
    assert (row.client_id, row.started_at) == ("9", T0 + 5)
    # Another user still cannot take over.
    assert (await live.try_publish("live/alice", BOB, "10", NODE, T0 + 6)).reason is (
        LiveReason.BUSY
    )
    # The replaced connection's renewal (nginx-rtmp on_update) is refused: it ends.
    renewal = await live.try_publish("live/alice", ALICE, "6", NODE, T0 + 30, renewal=True)
    assert renewal == PublishVerdict(False, LiveReason.ENDED)
    # Its publish_done does not end the new publisher.
    assert await live.publish_done("live/alice", "6", NODE) is None
    assert [r.client_id for r in await live.live()] == ["9"]


async def test_renewal_of_an_unknown_session_adopts_it(make: Make) -> None:
    # An in-process registry lost its sessions with the process; the publisher's
    # next on_update brings it back, and a newcomer meanwhile wins the stream.
    live = make()
    verdict = await live.try_publish("live/alice", ALICE, "6", NODE, T0, renewal=True)
    assert verdict == PublishVerdict(True, LiveReason.STARTED)
    other = make()
    await other.try_publish("live/alice", BOB, "7", NODE, T0)
    assert (await other.try_publish("live/alice", ALICE, "6", NODE, T0, renewal=True)).reason is (
        LiveReason.BUSY
    )


async def test_viewers_do_not_block_a_publisher_and_stay_when_it_leaves(make: Make) -> None:
    live = make()
    assert (await live.play_started("live/alice", BOB, "3", NODE, T0)).accepted
    assert (await live.try_publish("live/alice", ALICE, "6", NODE, T0)).accepted
    assert [r.viewers for r in await live.live()] == [1]
    await live.publish_done("live/alice", "6", NODE)
    assert await live.live() == []
    assert (await counts(live)) == (1, 1)
    assert (await live.play_done("live/alice", "3", NODE)) is not None
    assert (await counts(live)) == (0, 0)


# -- playing ---------------------------------------------------------------------------


async def test_viewers_are_paired_by_client_id(make: Make) -> None:
    live = make()
    await live.try_publish("live/alice", ALICE, "1", NODE, T0)
    assert await live.play_started("live/alice", BOB, "2", NODE, T0) == PlayVerdict(
        True, LiveReason.STARTED, 1
    )
    assert (await live.play_started("live/alice", None, "3", NODE, T0)).viewers == 2
    assert (await live.play_started("live/alice", None, "2", "nginx-2", T0)).viewers == 3
    # A repeated start (retried hook, on_update) is not a new viewer.
    assert await live.play_started("live/alice", BOB, "2", NODE, T0 + 1) == PlayVerdict(
        True, LiveReason.RENEWED, 3
    )
    assert [r.viewers for r in await live.live()] == [3]
    done = await live.play_done("live/alice", "2", NODE)
    assert done == Viewing("live/alice", BOB, "2", NODE, T0, T0 + 1)
    assert [r.viewers for r in await live.live()] == [2]


async def test_done_without_start_is_ignored_and_counts_never_go_negative(make: Make) -> None:
    live = make()
    await live.try_publish("live/alice", ALICE, "1", NODE, T0)
    assert await live.play_done("live/alice", "99", NODE) is None
    assert await live.play_done("live/nobody", "99", NODE) is None
    await live.play_started("live/alice", None, "2", NODE, T0)
    assert await live.play_done("live/alice", "2", NODE) is not None
    assert await live.play_done("live/alice", "2", NODE) is None  # twice
    assert [r.viewers for r in await live.live()] == [0]
    assert (await counts(live)) == (1, 0)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # `make` makes a fresh one
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["start", "done", "pub", "unpub"]),
            st.sampled_from(["live/a", "live/b"]),
            st.sampled_from(["1", "2", "3"]),
            st.sampled_from(["n1", "n2"]),
        ),
        max_size=60,
    )
)
async def test_counts_match_a_model_under_any_callback_order(
    make: Make,
    events: list[tuple[str, str, str, str]],
) -> None:
    live = make(LiveLimits(max_viewers_per_stream=4, max_viewers=6))
    viewers: dict[str, set[tuple[str, str]]] = {"live/a": set(), "live/b": set()}
    publishers: dict[str, tuple[str, str] | None] = {"live/a": None, "live/b": None}
    for kind, stream, client, node in events:
        if kind == "start":
            verdict = await live.play_started(stream, None, client, node, T0)
            total = sum(len(v) for v in viewers.values())
            fits = (node, client) in viewers[stream] or (len(viewers[stream]) < 4 and total < 6)
            assert verdict.accepted == fits
            if fits:
                viewers[stream].add((node, client))
        elif kind == "done":
            ended = await live.play_done(stream, client, node)
            assert (ended is not None) == ((node, client) in viewers[stream])
            viewers[stream].discard((node, client))
        elif kind == "pub":
            published = await live.try_publish(stream, "u@example.org", client, node, T0)
            free = publishers[stream] in (None, (node, client))
            assert published.accepted == free
            if free:
                publishers[stream] = (node, client)
        else:
            ended_pub = await live.publish_done(stream, client, node)
            assert (ended_pub is not None) == (publishers[stream] == (node, client))
            if ended_pub is not None:
                publishers[stream] = None
        streams_held = sum(1 for s in viewers if viewers[s] or publishers[s])
        assert (await counts(live)) == (streams_held, sum(len(v) for v in viewers.values()))
    rows = {r.stream: r.viewers for r in await live.live()}
    assert rows == {s: len(viewers[s]) for s in viewers if publishers[s] is not None}


# -- bounds ------------------------------------------------------------------------------


async def test_stream_cap(make: Make) -> None:
    live = make(LiveLimits(max_streams=2))
    assert (await live.try_publish("live/a", ALICE, "1", NODE, T0)).accepted
    assert (await live.play_started("live/b", None, "2", NODE, T0)).accepted
    # viewers of a stream nobody publishes do not keep publishers out: one published
    assert (await live.try_publish("live/c", ALICE, "3", NODE, T0)).accepted
    # two published: the next new stream is refused, to publish or to play
    assert await live.try_publish("live/d", ALICE, "4", NODE, T0) == PublishVerdict(
        False, LiveReason.TOO_MANY_STREAMS
    )
    assert await live.play_started("live/d", None, "5", NODE, T0) == PlayVerdict(
        False, LiveReason.TOO_MANY_STREAMS
    )
    # Streams already held still take publishers and viewers.
    assert (await live.try_publish("live/b", BOB, "6", NODE, T0)).accepted
    assert (await live.play_started("live/a", None, "7", NODE, T0)).accepted
    await live.publish_done("live/a", "1", NODE)
    await live.play_done("live/a", "7", NODE)
    await live.publish_done("live/c", "3", NODE)
    assert (await live.try_publish("live/d", ALICE, "4", NODE, T0)).accepted


async def test_made_up_viewer_only_streams_never_lock_publishers_out(make: Make) -> None:
    live = make(LiveLimits(max_streams=10))
    for i in range(50):  # anonymous viewers of names nobody publishes
        await live.play_started(f"public/made-up{i}", None, f"v{i}", NODE, T0)
    assert (await counts(live))[0] == 10  # they stop at the cap
    for i in range(10):
        assert (await live.try_publish(f"live/s{i}", ALICE, f"p{i}", NODE, T0)).accepted
    assert not (await live.try_publish("live/s10", ALICE, "p10", NODE, T0)).accepted
    assert (await counts(live))[0] == 20  # at most twice the cap in the table


async def test_viewer_caps_per_stream_and_in_all(make: Make) -> None:
    live = make(LiveLimits(max_viewers_per_stream=2, max_viewers=3))
    assert (await live.play_started("live/a", None, "1", NODE, T0)).accepted
    assert (await live.play_started("live/a", None, "2", NODE, T0)).accepted
    assert await live.play_started("live/a", None, "3", NODE, T0) == PlayVerdict(
        False, LiveReason.TOO_MANY_VIEWERS, 2
    )
    # A viewer already counted may renew at the cap.
    assert (await live.play_started("live/a", None, "2", NODE, T0 + 1, renewal=True)).accepted
    assert (await live.play_started("live/b", None, "4", NODE, T0)).accepted
    assert await live.play_started("live/b", None, "5", NODE, T0) == PlayVerdict(
        False, LiveReason.VIEWER_LIMIT, 1
    )
    assert await live.play_started("live/c", None, "6", NODE, T0) == PlayVerdict(
        False, LiveReason.VIEWER_LIMIT, 0
    )
    assert (await counts(live)) == (2, 3)  # the refused live/c left no entry


async def test_a_hostile_callback_flood_stays_bounded(make: Make) -> None:
    live = make(LiveLimits(max_streams=50, max_viewers_per_stream=20, max_viewers=500))
    accepted = 0
    for i in range(5_000):
        verdict = await live.play_started(f"live/s{i % 100}", None, f"c{i}", NODE, T0)
        accepted += verdict.accepted
        await live.try_publish(f"live/p{i}", None, f"d{i}", NODE, T0)
    streams, viewers = await counts(live)
    assert streams <= 100  # 50 published and at most 50 with viewers only
    assert viewers <= 500
    assert accepted == viewers


@pytest.mark.parametrize(
    ("stream", "client_id", "node", "who"),
    [
        ("live/alice&name=bob", "1", NODE, ALICE),
        ("live/../bob", "1", NODE, ALICE),
        ("live/%2e%2e/bob", "1", NODE, ALICE),
        ("live/alice\0", "1", NODE, ALICE),
        ("live/" + "a" * 300, "1", NODE, ALICE),
        ("live/alice", "", NODE, ALICE),
        ("live/alice", "x" * (MAX_CLIENT_ID + 1), NODE, ALICE),
        ("live/alice", "1 2", NODE, ALICE),
        ("live/alice", "1\n", NODE, ALICE),
        ("live/alice", "é", NODE, ALICE),
        ("live/alice", "1", "", ALICE),
        ("live/alice", "1", "n" * (MAX_CLIENT_ID + 1), ALICE),
        ("live/alice", "1", NODE, ""),
        ("live/alice", "1", NODE, "a" * 3000),
        ("live/alice", "1", NODE, "alice\n@example.org"),
    ],
)
async def test_invalid_peer_text_is_refused_not_truncated(
    stream: str, client_id: str, node: str, who: str, make: Make
) -> None:
    live = make()
    assert await live.try_publish(stream, who, client_id, node, T0) == PublishVerdict(
        False, LiveReason.INVALID
    )
    assert await live.play_started(stream, who, client_id, node, T0) == PlayVerdict(
        False, LiveReason.INVALID
    )
    assert (await counts(live)) == (0, 0)


async def test_client_id_at_the_bound_is_accepted(make: Make) -> None:
    live = make()
    client = "x" * MAX_CLIENT_ID
    assert (await live.try_publish("live/a", ALICE, client, NODE, T0)).accepted
    assert (await live.publish_done("live/a", client, NODE)) is not None


async def test_bad_credential_id_is_refused(make: Make) -> None:
    live = make()
    verdict = await live.try_publish("live/a", ALICE, "1", NODE, T0, credential="k" * 65)
    assert verdict.reason is LiveReason.INVALID


def test_limits_are_validated() -> None:
    for bad in (
        {"max_streams": -1},
        {"max_viewers": 1.5},
        {"max_ended": True},
        {"unconfirmed_grace": float("nan")},
        {"ended_ttl": float("inf")},
        {"stale_after": -1.0},
    ):
        with pytest.raises(ValueError):
            LiveLimits(**bad)
    assert LiveLimits(stale_after=None).stale_after is None


async def test_now_must_be_a_finite_number(make: Make) -> None:
    live = make()
    with pytest.raises(ValueError):
        await live.try_publish("live/a", ALICE, "1", NODE, float("nan"))
    with pytest.raises(ValueError):
        await live.play_started("live/a", ALICE, "1", NODE, float("inf"))


# -- revocation ----------------------------------------------------------------------------


async def _populated(make: Make) -> LiveStreams:
    live = make()
    await live.try_publish("live/alice", ALICE, "1", NODE, T0, credential="key-a")
    await live.try_publish("live/bob", BOB, "2", NODE, T0, credential="tok-b")
    await live.play_started("live/bob", ALICE, "3", NODE, T0)
    await live.play_started("live/alice", BOB, "4", NODE, T0, credential="tok-p")
    await live.play_started("live/alice", None, "5", NODE, T0)
    return live


async def test_revoke_a_user_ends_their_publications_and_viewings(make: Make) -> None:
    live = await _populated(make)
    ended = await live.revoke(T0 + 10, user=ALICE)
    assert sorted((type(s).__name__, s.stream, s.client_id) for s in ended) == [
        ("Publication", "live/alice", "1"),
        ("Viewing", "live/bob", "3"),
    ]
    assert [(r.stream, r.viewers) for r in await live.live()] == [("live/bob", 0)]
    assert (await counts(live)) == (2, 2)  # live/alice keeps its two viewers, waiting
    # The revoked publisher's on_update is refused; a fresh start is evaluated anew.
    renewal = await live.try_publish("live/alice", ALICE, "1", NODE, T0 + 20, renewal=True)
    assert renewal.reason is LiveReason.ENDED
    viewer_renewal = await live.play_started("live/bob", ALICE, "3", NODE, T0 + 20, renewal=True)
    assert viewer_renewal.reason is LiveReason.ENDED
    assert (await live.try_publish("live/alice", ALICE, "1", NODE, T0 + 21)).accepted


async def test_revoke_a_stream_ends_everyone_on_it(make: Make) -> None:
    live = await _populated(make)
    ended = await live.revoke(T0 + 10, stream="live/alice")
    assert sorted(s.client_id for s in ended) == ["1", "4", "5"]
    assert [r.stream for r in await live.live()] == ["live/bob"]
    assert (await counts(live)) == (1, 1)


async def test_revoke_a_credential_and_combined_criteria(make: Make) -> None:
    live = await _populated(make)
    assert [s.client_id for s in await live.revoke(T0, credential="tok-p")] == ["4"]
    assert await live.revoke(T0, user=BOB, stream="live/alice") == []
    ended = await live.revoke(T0, user=BOB, stream="live/bob")
    assert [(s.stream, s.client_id) for s in ended] == [("live/bob", "2")]
    assert await live.revoke(T0, stream="live/nothing") == []
    with pytest.raises(ValueError):
        await live.revoke(T0)


async def test_ended_sessions_are_forgotten_after_their_ttl_and_bounded(make: Make) -> None:
    live = make(LiveLimits(ended_ttl=60, max_ended=2))
    for client in ("1", "2", "3"):
        await live.try_publish(f"live/{client}", ALICE, client, NODE, T0)
    await live.revoke(T0, user=ALICE)
    # At most two remembered: the oldest ("1") is forgotten and may renew.
    assert (await live.try_publish("live/1", ALICE, "1", NODE, T0 + 1, renewal=True)).accepted
    assert not (await live.try_publish("live/2", ALICE, "2", NODE, T0 + 1, renewal=True)).accepted
    await live.expire(T0 + 61)
    assert (await live.try_publish("live/3", ALICE, "3", NODE, T0 + 62, renewal=True)).accepted


async def test_done_of_a_revoked_session_clears_its_memory(make: Make) -> None:
    live = make()
    await live.try_publish("live/a", ALICE, "1", NODE, T0)
    await live.revoke(T0, stream="live/a")
    assert await live.publish_done("live/a", "1", NODE) is None
    assert (await live.try_publish("live/a", ALICE, "1", NODE, T0 + 1, renewal=True)).accepted


async def test_forget_node(make: Make) -> None:
    live = make()
    await live.try_publish("live/a", ALICE, "1", "srs-1", T0)
    await live.try_publish("live/b", BOB, "1", "srs-2", T0)
    await live.play_started("live/b", None, "2", "srs-1", T0)
    await live.revoke(T0, stream="live/a")
    await live.try_publish("live/a", ALICE, "5", "srs-1", T0)
    ended = await live.forget_node("srs-1")
    assert sorted((s.stream, s.client_id) for s in ended) == [("live/a", "5"), ("live/b", "2")]
    assert [(r.stream, r.node, r.viewers) for r in await live.live()] == [("live/b", "srs-2", 0)]
    # The media server restarted: its client ids start again and are not "ended".
    assert (await live.try_publish("live/a", ALICE, "1", "srs-1", T0, renewal=True)).accepted


# -- restarts ------------------------------------------------------------------------------


async def test_restart_makes_sessions_unconfirmed_until_a_callback(make: Make) -> None:
    live = make(LiveLimits(unconfirmed_grace=120))
    await live.try_publish("live/a", ALICE, "1", NODE, T0)
    await live.try_publish("live/b", BOB, "2", NODE, T0)
    await live.play_started("live/a", None, "3", NODE, T0)
    restart = T0 + 1000
    await live.restarted(restart)
    assert await live.live() == []  # nothing is claimed live until confirmed
    rows = await live.live(include_unconfirmed=True)
    assert [(r.stream, r.confirmed, r.last_seen, r.viewers) for r in rows] == [
        ("live/a", False, restart, 1),
        ("live/b", False, restart, 0),
    ]
    # live/a's media server renews it: confirmed, its start time kept.
    renewed = await live.try_publish("live/a", ALICE, "1", NODE, restart + 30, renewal=True)
    assert renewed.reason is LiveReason.RENEWED
    assert [(r.stream, r.started_at, r.viewers) for r in await live.live()] == [("live/a", T0, 0)]
    await live.play_started("live/a", None, "3", NODE, restart + 30, renewal=True)
    assert [r.viewers for r in await live.live()] == [1]
    # live/b ended during the outage: no callback comes, and it expires.
    assert await live.expire(restart + 120) == []
    expired = await live.expire(restart + 121)
    assert [(s.stream, s.confirmed) for s in expired] == [("live/b", False)]
    assert [r.stream for r in await live.live(include_unconfirmed=True)] == ["live/a"]


async def test_unconfirmed_publication_blocks_others_but_not_its_user(make: Make) -> None:
    live = make(LiveLimits(unconfirmed_grace=120))
    await live.try_publish("live/a", ALICE, "1", NODE, T0)
    await live.restarted(T0 + 1000)
    # Another user: refused while the old one may still be live.
    assert (await live.try_publish("live/a", BOB, "7", NODE, T0 + 1010)).reason is (LiveReason.BUSY)
    # After the grace, with no callback, the stream is free.
    verdict = await live.try_publish("live/a", BOB, "7", NODE, T0 + 1121)
    assert verdict.accepted
    assert verdict.ended is not None and verdict.ended.publisher == ALICE

    again = make()
    await again.try_publish("live/a", ALICE, "1", NODE, T0)
    await again.restarted(T0 + 1000)
    # The same user reconnects on a new connection at once, takeover off or not.
    verdict = await again.try_publish("live/a", ALICE, "9", NODE, T0 + 1001)
    assert verdict.reason is LiveReason.STARTED
    assert verdict.ended is not None and verdict.ended.client_id == "1"
    assert [(r.client_id, r.confirmed) for r in await again.live()] == [("9", True)]


async def test_stale_confirmed_sessions_with_periodic_callbacks(make: Make) -> None:
    live = make(LiveLimits(stale_after=90))
    await live.try_publish("live/a", ALICE, "1", NODE, T0)
    await live.play_started("live/a", None, "2", NODE, T0)
    await live.try_publish("live/a", ALICE, "1", NODE, T0 + 60, renewal=True)
    assert (await live.try_publish("live/a", BOB, "3", NODE, T0 + 100)).reason is LiveReason.BUSY
    # No renewal for more than 90 s: the publisher's media server is gone.
    verdict = await live.try_publish("live/a", BOB, "3", NODE, T0 + 151)
    assert verdict.accepted and verdict.ended is not None
    expired = await live.expire(T0 + 151)
    assert [(type(s).__name__, s.client_id) for s in expired] == [("Viewing", "2")]
    # Without stale_after, nothing expires by age.
    plain = make()
    await plain.try_publish("live/a", ALICE, "1", NODE, T0)
    assert await plain.expire(T0 + 10**6) == []
    assert (await plain.try_publish("live/a", BOB, "3", NODE, T0 + 10**6)).reason is (
        LiveReason.BUSY
    )
