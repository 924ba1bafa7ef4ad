"""The persistent-room repository on SQLite, and on PostgreSQL (`postgresql_only`
copies): saving replaces the room whole, affiliations go with the room, services
are kept apart, and a room JID near the length limit fits."""

from __future__ import annotations

import pytest

from chatgate.storage.database import Database
from chatgate.storage.repositories.rooms import RoomRecord, RoomRepository


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
