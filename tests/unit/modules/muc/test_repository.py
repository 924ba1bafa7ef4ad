"""The persistent-room repository on SQLite, and on PostgreSQL (`postgresql_only`
copies): saving replaces the room whole, affiliations go with the room, services
are kept apart, and a room JID near the length limit fits."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from chatgate.storage.database import Database
from chatgate.storage.repositories.rooms import RoomRecord, RoomRepository

from .support import ROOM, SERVICE, Client, configure, running


async def check_round_trip(db: Database) -> None:
    repo = RoomRepository(db.engine)
    long_local = "r" * 1023
    first = RoomRecord(
        jid="team@conference.example.org",
        config={"name": "Team", "persistent": True, "max_occupants": 10},
        secret=b"\x00\x01secret",
        subject="Plans ✓",
        subject_nick="Alice",
        affiliations={"alice@example.org": "owner", "bob@example.org": "member"},
    )
    await repo.save(first)
    await repo.save(RoomRecord(jid=f"{long_local}@conference.example.org", config={}, secret=b"k"))
    await repo.save(RoomRecord(jid="other@conference.example.com", config={}, secret=b"k"))
    loaded = {r.jid: r for r in await repo.load("conference.example.org")}
    assert set(loaded) == {first.jid, f"{long_local}@conference.example.org"}
    assert loaded[first.jid] == first
    # a save replaces: an affiliation dropped is gone, the config is the new one
    changed = RoomRecord(
        jid=first.jid,
        config={"name": "Renamed"},
        secret=first.secret,
        affiliations={"alice@example.org": "owner", "carol@example.org": "outcast"},
    )
    await repo.save(changed)
    (again,) = [r for r in await repo.load("conference.example.org") if r.jid == first.jid]
    assert again == changed
    await repo.delete(first.jid)
    await repo.delete("never@conference.example.org")
    assert [r.jid for r in await repo.load("conference.example.org")] == [
        f"{long_local}@conference.example.org"
    ]
    # the affiliations went with the room (ON DELETE CASCADE)
    await repo.save(RoomRecord(jid=first.jid, config={}, secret=b"k"))
    (fresh,) = [r for r in await repo.load("conference.example.org") if r.jid == first.jid]
    assert fresh.affiliations == {}


async def test_rooms_round_trip(db: Database) -> None:
    await check_round_trip(db)


@pytest.mark.postgresql_only
async def test_rooms_round_trip_on_postgresql(db: Database) -> None:
    await check_round_trip(db)


async def test_writes_for_one_room_are_stored_in_the_order_asked(tmp_path: Path) -> None:
    """Two changes whose writes are both under way: the later one is what stays, and
    a destroyed room's deletion comes before a new room of the same name is saved."""
    async with running(tmp_path) as srv:
        alice = await Client.login(srv, "alice")
        await alice.join("Alice")
        await alice.send(configure({"muc#roomconfig_persistentroom": "1"}))
        muc = srv.module("muc")
        service, registry = muc.service, muc.registry
        room = registry.get(ROOM)
        room.config = replace(room.config, name="first")
        first = service.persist(room)
        room.config = replace(room.config, name="second")
        second = service.persist(room)
        await asyncio.gather(first, second)
        (stored,) = await service.store.load(SERVICE)
        assert stored.config["name"] == "second"
        # destroyed, then made again under the same JID before the deletion ran
        gone = service.destroy(room)
        again = service.new_room(ROOM, "alice@localhost")
        again.config = replace(again.config, persistent=True, name="reborn")
        registry.add(again)
        await asyncio.gather(gone, service.persist(again))
        (stored,) = await service.store.load(SERVICE)
        assert stored.config["name"] == "reborn"
