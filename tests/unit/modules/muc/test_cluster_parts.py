"""The pieces of group chat in a cluster, alone: a room's state handed over and read
back (`handover.py`), forged or broken states refused; per-sender order of
forwarded stanzas that await storage (`Lanes`), bounded; the rooms a node
remembers of its sessions (`Memberships`), bounded."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from chatgate.modules.muc import relay
from chatgate.modules.muc.handover import restore, room_state
from chatgate.modules.muc.relay import (
    MAX_WAITING_PER_SENDER,
    Ended,
    Lanes,
    Memberships,
    Ran,
    Routes,
)
from chatgate.modules.muc.room import (
    History,
    HistoryBudget,
    HistoryEntry,
    Occupant,
    Room,
    RoomConfig,
)
from chatgate.xml.element import Element
from chatgate.xml.framed import parse_fragment
from chatgate.xml.serialize import serialize

ROOM = "team@conference.localhost"


def a_room() -> Room:
    budget = HistoryBudget(1 << 20)
    room = Room(
        ROOM,
        RoomConfig(name="Team", moderated=True, persistent=False, history_length=10),
        history=History(10, 1 << 16, budget),
        affiliations={"alice@localhost": "owner", "eve@localhost": "outcast"},
        subject="Plans",
        subject_nick="Alice",
    )
    alice = Occupant("Alice", "alice@localhost", "moderator")
    presence = parse_fragment(
        b"<presence><show>away</show><status>lunch &amp; more</status></presence>"
    )
    room.add_session("alice", alice, "alice@localhost/phone", presence)
    room.add_session("alice", alice, "alice@localhost/desk", Element("presence", "jabber:client"))
    bob = Occupant("Bob", "bob@localhost", "visitor", voice_requested=12.5)
    room.add_session("bob", bob, "bob@localhost/r", Element("presence", "jabber:client"))
    msg = parse_fragment(
        f"<message from='{ROOM}/Alice' type='groupchat'><body>hi &lt;all&gt;</body></message>".encode()
    )
    room.history.add(HistoryEntry(msg, "2026-12-05T15:00:00Z", 1.5, 80, "alice@localhost", "sid1"))
    return room


def test_a_room_handed_over_reads_back_as_it_was() -> None:
    room = a_room()
    budget = HistoryBudget(1 << 20)
    copy = restore(room_state(room), History(10, 1 << 16, budget), 1 << 16)
    assert copy.jid == room.jid and copy.config == room.config
    assert copy.affiliations == room.affiliations and copy.secret == room.secret
    assert (copy.subject, copy.subject_nick, copy.locked) == ("Plans", "Alice", False)
    assert copy.by_full == room.by_full
    assert copy.occupant_id("bob@localhost") == room.occupant_id("bob@localhost")
    for key, occupant in room.occupants.items():
        other = copy.occupants[key]
        assert (other.nick, other.bare, other.role) == (occupant.nick, occupant.bare, occupant.role)
        assert list(other.sessions) == list(occupant.sessions)  # the newest stays last
        assert [serialize(p) for p in other.sessions.values()] == [
            serialize(p) for p in occupant.sessions.values()
        ]
    assert copy.occupants["bob"].voice_requested == 12.5
    assert copy.occupants["alice"].voice_requested == float("-inf")
    (entry,) = copy.history.entries
    assert serialize(entry.stanza) == serialize(room.history.entries[0].stanza)
    assert (entry.stamp, entry.when, entry.size, entry.sender, entry.stanza_id) == (
        "2026-12-05T15:00:00Z",
        1.5,
        80,
        "alice@localhost",
        "sid1",
    )
    assert budget.used == 80  # the receiving node's history budget counts it


@pytest.mark.parametrize(
    "state",
    [
        b"{not json",
        b"[]",
        json.dumps({"v": 99}).encode(),
        json.dumps({"v": 1, "jid": ROOM}).encode(),  # keys missing
    ],
)
def test_an_unreadable_state_is_refused(state: bytes) -> None:
    with pytest.raises(ValueError):
        restore(state, History(10, 1 << 16), 1 << 16)


def test_a_state_with_a_stanza_over_the_limit_is_refused() -> None:
    room = a_room()
    with pytest.raises(ValueError):
        restore(room_state(room), History(10, 1 << 16), 40)


async def test_lanes_keep_one_senders_order_while_storage_is_awaited() -> None:
    lanes = Lanes()
    done: list[str] = []
    gate = asyncio.Event()

    async def stored() -> None:
        await gate.wait()
        done.append("stored")

    def first() -> asyncio.Future[None]:
        done.append("first")
        return asyncio.ensure_future(stored())

    assert lanes.run("a@x/r", first)
    assert lanes.run("a@x/r", lambda: done.append("second") and None)
    assert lanes.run("b@x/r", lambda: done.append("other") and None)  # not held up
    assert done == ["first", "other"]
    gate.set()
    await lanes.drained()
    assert done == ["first", "other", "stored", "second"]
    # once drained, the next runs at once
    assert lanes.run("a@x/r", lambda: done.append("third") and None)
    assert done[-1] == "third"


async def test_a_full_lane_refuses() -> None:
    lanes = Lanes()
    gate = asyncio.Event()
    assert lanes.run("a@x/r", lambda: _wait(gate))
    for _ in range(MAX_WAITING_PER_SENDER):
        assert lanes.run("a@x/r", lambda: None)
    assert not lanes.run("a@x/r", lambda: None)
    gate.set()
    await lanes.drained()
    assert lanes.run("a@x/r", lambda: None)


async def _wait(gate: asyncio.Event) -> None:
    await gate.wait()


async def test_after_is_done_once_what_a_lane_held_has_run_even_when_it_is_full() -> None:
    lanes = Lanes()
    assert lanes.after("a@x/r") is None  # nothing held: nothing to wait for
    gate = asyncio.Event()
    done: list[int] = []
    assert lanes.run("a@x/r", lambda: _wait(gate))
    for i in range(MAX_WAITING_PER_SENDER):
        assert lanes.run("a@x/r", lambda i=i: done.append(i))  # type: ignore[misc]
    after = lanes.after("a@x/r")  # another node's question: not refused
    assert after is not None and not after.done()
    gate.set()
    await after
    assert done == list(range(MAX_WAITING_PER_SENDER))
    await lanes.drained()


async def test_work_awaiting_outside_the_lanes_is_not_done_and_drained_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over `MAX_WAITING_SENDERS`, awaiting work runs outside any lane: `run` must
    not say it finished (a presence hop's answer would report the session out of
    a room it is joining), and a stopping node's `drained` waits for it."""
    monkeypatch.setattr(relay, "MAX_WAITING_SENDERS", 0)
    lanes = Lanes()
    assert lanes.run("a@x/r", lambda: None) is Ran.DONE
    gate = asyncio.Event()
    assert lanes.run("a@x/r", lambda: _wait(gate)) is Ran.WAITING
    drained = asyncio.ensure_future(lanes.drained())
    await asyncio.sleep(0.01)
    assert not drained.done()
    gate.set()
    await asyncio.wait_for(drained, 1)
    await lanes.drained()


async def test_a_work_that_fails_is_logged_and_its_lane_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lanes = Lanes()
    gate = asyncio.Event()
    done: list[str] = []
    assert lanes.run("a@x/r", lambda: _wait(gate))
    assert lanes.run("a@x/r", lambda: 1 // 0)  # type: ignore[arg-type,return-value]
    assert lanes.run("a@x/r", lambda: done.append("after") and None)
    mark = lanes.after("a@x/r")
    assert mark is not None
    with caplog.at_level(logging.ERROR, logger="chatgate.modules.muc.relay"):
        gate.set()
        await asyncio.wait_for(mark, 1)
    assert done == ["after"]  # the sender's next stanza was not dropped
    assert any("handling failed" in r.getMessage() for r in caplog.records)


async def test_marks_in_an_abandoned_lane_are_set_and_no_more_are_given() -> None:
    lanes = Lanes()
    gate = asyncio.Event()
    assert lanes.run("a@x/r", lambda: _wait(gate))
    mark = lanes.after("a@x/r")
    assert mark is not None
    lanes.abandon()
    assert lanes.after("a@x/r") is None
    await asyncio.wait_for(mark, 1)  # not left for its asker's timeout


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
async def test_abandoned_lanes_take_nothing_more_and_leave_nothing_behind() -> None:
    """Cancelled before its first step, a lane's task runs no `finally`: its
    bookkeeping is done when it ends, and the awaitable it never awaited is closed
    (no "never awaited" warning)."""
    lanes = Lanes()
    assert lanes.run("a@x/r", lambda: asyncio.sleep(10))  # type: ignore[arg-type,return-value]
    assert lanes.abandon() == 1
    await asyncio.sleep(0.01)
    assert lanes.after("a@x/r") is None  # the lane is gone
    await asyncio.wait_for(lanes.drained(), 1)
    assert not lanes.run("b@x/r", lambda: None)  # closed


def test_routes_say_which_node_a_pairs_stanzas_went_to_before_a_switch() -> None:
    routes = Routes(per_sender=10)
    assert routes.switch("a@x/r", "room@muc", "beta") is None  # new
    assert routes.switch("a@x/r", "room@muc", "beta") is None  # unchanged
    assert routes.switch("a@x/r", "room@muc", "gamma") == "beta"
    assert routes.switch("a@x/r", "room@muc", "gamma") is None
    assert routes.switch("a@x/r", "other@muc", "beta") is None  # per room
    # a session's pairs go with it
    routes.forget("a@x/r")
    assert len(routes) == 0 and routes.bytes == 0
    assert routes.switch("a@x/r", "room@muc", "beta") is None


def test_routes_are_bounded_per_sender_and_in_bytes() -> None:
    routes = Routes(per_sender=3, max_bytes=8000)
    for sender in "ab":
        routes.switch(f"{sender}@x.org/r", "room@muc.x", "beta")  # 10 + 10 bytes
    # one client writing to many rooms pushes out only its own oldest
    for i in range(1000):
        routes.switch("c@x.org/r", f"{i:04d}{'r' * 2000}@muc.x", "beta")
    assert len(routes) == 2 + 3
    assert routes.switch("a@x.org/r", "room@muc.x", "gamma") == "beta"
    # in all: the senders whose last stanza is oldest go first, whole (b, then c:
    # a wrote since)
    for sender in "defgh":
        routes.switch(f"{sender}@x.org/r", "room@muc.x", "beta")
    assert routes.bytes <= routes.max_bytes
    assert routes.switch("b@x.org/r", "room@muc.x", "alpha") is None  # forgotten: new
    assert routes.switch("a@x.org/r", "room@muc.x", "alpha") == "gamma"
    assert routes.switch("h@x.org/r", "room@muc.x", "gamma") == "beta"
    for sender in "abcdefgh":
        routes.forget(f"{sender}@x.org/r")  # c and the others already gone: no-ops
    assert routes.bytes == 0


def test_memberships_are_bounded_per_session_and_forgotten_at_the_end() -> None:
    rooms = Memberships(per_session=3)
    for i in range(5):
        rooms.joined("a@x/r", f"room{i}@c.x", f"N{i}")
    rooms.joined("b@x/r", "room0@c.x", "B")
    ((full, kept), (other, theirs)) = rooms.items()
    assert full == "a@x/r" and kept == {"room2@c.x": "N2", "room3@c.x": "N3", "room4@c.x": "N4"}
    assert other == "b@x/r" and theirs == {"room0@c.x": "B"}
    rooms.left("a@x/r", "room3@c.x")
    # two rooms were pushed out: the list is incomplete, its end goes to every node
    assert rooms.incomplete == {"a@x/r"}
    assert rooms.ended("a@x/r") is None
    assert rooms.ended("a@x/r") == {} and not rooms.incomplete
    assert rooms.ended("b@x/r") == {"room0@c.x": "B"}
    assert rooms.items() == []


def test_a_moving_sessions_rooms_are_carried_the_latest_first_within_the_bound() -> None:
    rooms = Memberships(per_session=10)
    for i in range(5):
        rooms.joined("a@x/r", f"room{i}@c.x", f"N{i}")
    carried = rooms.carried("a@x/r", 45)  # room for two
    assert json.loads(carried) == {"room3@c.x": "N3", "room4@c.x": "N4"}
    assert len(carried) <= 45
    arriving = Memberships(per_session=10)
    arriving.arrived("a@x/r", carried)
    assert arriving.items() == [("a@x/r", {"room3@c.x": "N3", "room4@c.x": "N4"})]
    assert arriving.ended("a@x/r") is None  # more may have been left behind
    arriving.arrived("b@x/r", "{not json")
    assert arriving.items() == []


def test_ended_sessions_are_remembered_a_minute_at_most_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(relay, "ENDED_COUNT", 3)
    ended = Ended(clock=lambda: now[0])
    for i in range(4):
        ended.add(f"u{i}@x/r")
    assert "u0@x/r" not in ended  # the oldest went first
    assert all(f"u{i}@x/r" in ended for i in (1, 2, 3))
    ended.discard("u2@x/r")  # came back under the same resource
    assert "u2@x/r" not in ended
    now[0] += relay.ENDED_SECONDS + 1
    assert "u3@x/r" not in ended  # too long ago
    assert 42 not in ended
