"""ArchiveRepository on SQLite and PostgreSQL: only existing accounts' rows are
stored, pages go both ways with the right completeness, filters select what
XEP-0313 says, unknown page ids are refused, retention deletes the oldest, and
deleting an account deletes its archive and preferences."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from chatgate.auth.credentials import ScramKeys
from chatgate.modules.mam.ids import IdGenerator, bounds_for, millis
from chatgate.storage.database import Database
from chatgate.storage.errors import AccountNotFound
from chatgate.storage.repositories.archive import (
    ArchiveFilter,
    ArchivePrefs,
    ArchiveRepository,
    NewArchiveRow,
    PageRequest,
    UnknownArchiveId,
)

from .conftest import ALICE, BOB, rows

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
ROOM = "lounge@conference.localhost"


def _rows(
    owner: tuple[str, str], n: int, peers: list[str], start: datetime = T0
) -> list[NewArchiveRow]:
    ids = IdGenerator(random.Random(owner[0]).randbytes)
    out = []
    for i in range(n):
        stamp = start + timedelta(seconds=i)
        peer = peers[i % len(peers)]
        bare, _, resource = peer.partition("/")
        out.append(
            NewArchiveRow(
                owner=f"{owner[0]}@{owner[1]}",
                account=owner,
                archive_id=ids.next(millis(stamp)),
                peer=bare,
                peer_resource=resource,
                stamp=stamp,
                stanza=f"<message><body>{i}</body></message>",
            )
        )
    return out


@pytest.fixture
async def archive(db: Database, keys: dict[str, ScramKeys]) -> ArchiveRepository:
    await db.accounts.create(*ALICE, keys)
    await db.accounts.create(*BOB, keys)
    return ArchiveRepository(db.engine)


def _bodies(page_records: list) -> list[str]:
    return [r.stanza.split("<body>")[1].split("<")[0] for r in page_records]


async def test_append_stores_only_rows_of_existing_accounts_and_rooms(
    archive: ArchiveRepository, db: Database
) -> None:
    good = _rows(ALICE, 2, ["bob@localhost"])
    ghost = _rows(("ghost", "localhost"), 1, ["alice@localhost"])
    room = NewArchiveRow(ROOM, None, good[0].archive_id, ROOM, "nick", T0, "<message/>")
    to_ghost = NewArchiveRow(
        "bob@localhost",
        BOB,
        good[1].archive_id,
        "ghost@localhost",
        "",
        T0,
        "<message/>",
        peer_account=("ghost", "localhost"),
    )
    to_alice = NewArchiveRow(
        "bob@localhost",
        BOB,
        good[0].archive_id,
        "alice@localhost",
        "",
        T0,
        "<message/>",
        peer_account=ALICE,
    )
    assert await archive.append([*good, *ghost, room, to_ghost, to_alice]) == 4
    owners = await rows(db, "SELECT owner, account_id IS NULL FROM archive_messages ORDER BY id")
    assert owners == [
        ("alice@localhost", False),
        ("alice@localhost", False),
        (ROOM, True),
        ("bob@localhost", False),
    ]


async def test_pages_forward_and_backward(archive: ArchiveRepository) -> None:
    entries = _rows(ALICE, 25, ["bob@localhost"])
    await archive.append(entries)
    owner = "alice@localhost"
    first = await archive.query(owner, ArchiveFilter(), PageRequest(max=10, count=True))
    assert _bodies(first.records) == [str(i) for i in range(10)]
    assert (first.complete, first.count) == (False, 25)
    third = await archive.query(
        owner, ArchiveFilter(), PageRequest(max=10, after=entries[19].archive_id)
    )
    assert _bodies(third.records) == [str(i) for i in range(20, 25)]
    assert third.complete
    last = await archive.query(owner, ArchiveFilter(), PageRequest(max=10, before=""))
    assert _bodies(last.records) == [str(i) for i in range(15, 25)]
    assert not last.complete
    earliest = await archive.query(
        owner, ArchiveFilter(), PageRequest(max=10, before=entries[10].archive_id)
    )
    assert _bodies(earliest.records) == [str(i) for i in range(10)]
    assert earliest.complete
    assert third.count is None  # not asked for
    only_count = await archive.query(owner, ArchiveFilter(), PageRequest(max=0))
    assert (only_count.records, only_count.count) == ([], 25)


async def test_unknown_page_id_is_refused(archive: ArchiveRepository) -> None:
    entries = _rows(ALICE, 3, ["bob@localhost"])
    await archive.append(entries)
    with pytest.raises(UnknownArchiveId):
        await archive.query("alice@localhost", ArchiveFilter(), PageRequest(max=5, after="0" * 26))
    # another archive's id is unknown here too
    bobs = _rows(BOB, 1, ["alice@localhost"])
    await archive.append(bobs)
    with pytest.raises(UnknownArchiveId):
        await archive.query(
            "alice@localhost", ArchiveFilter(), PageRequest(max=5, before=bobs[0].archive_id)
        )


async def test_filters_with_time_and_ids(archive: ArchiveRepository) -> None:
    entries = _rows(ALICE, 12, ["bob@localhost/phone", "carol@localhost", "bob@localhost/pc"])
    await archive.append(entries)
    owner = "alice@localhost"
    page = PageRequest(max=50)
    bob = await archive.query(owner, ArchiveFilter(peer="bob@localhost"), page)
    assert _bodies(bob.records) == ["0", "2", "3", "5", "6", "8", "9", "11"]
    phone = await archive.query(
        owner, ArchiveFilter(peer="bob@localhost", peer_resource="phone"), page
    )
    assert _bodies(phone.records) == ["0", "3", "6", "9"]
    low = bounds_for(millis(T0 + timedelta(seconds=4)))[0]
    high = bounds_for(millis(T0 + timedelta(seconds=6)))[1]
    window = await archive.query(owner, ArchiveFilter(min_id=low, max_id=high), page)
    assert _bodies(window.records) == ["4", "5", "6"]
    between = await archive.query(
        owner,
        ArchiveFilter(after_id=entries[2].archive_id, before_id=entries[5].archive_id),
        page,
    )
    assert _bodies(between.records) == ["3", "4"]
    chosen = await archive.query(
        owner, ArchiveFilter(ids=(entries[7].archive_id, entries[1].archive_id, "x")), page
    )
    assert _bodies(chosen.records) == ["1", "7"]


async def test_replace_and_delete_a_message(archive: ArchiveRepository) -> None:
    entries = _rows(ALICE, 2, ["bob@localhost"])
    await archive.append(entries)
    owner = "alice@localhost"
    assert await archive.replace(
        owner, entries[0].archive_id, "<message><body>gone</body></message>"
    )
    assert await archive.replace(owner, entries[1].archive_id, None)
    assert not await archive.replace(owner, "0" * 26, None)
    left = await archive.query(owner, ArchiveFilter(), PageRequest(max=5))
    assert _bodies(left.records) == ["gone"]


async def test_metadata_gives_oldest_and_newest(archive: ArchiveRepository) -> None:
    assert (await archive.metadata("alice@localhost")).first is None
    entries = _rows(ALICE, 4, ["bob@localhost"])
    await archive.append(entries)
    meta = await archive.metadata("alice@localhost")
    assert meta.first is not None and meta.last is not None
    assert (meta.first.archive_id, meta.last.archive_id) == (
        entries[0].archive_id,
        entries[3].archive_id,
    )


async def test_purges_by_age_and_by_count(archive: ArchiveRepository) -> None:
    await archive.append(_rows(ALICE, 10, ["bob@localhost"]))
    await archive.append(_rows(BOB, 3, ["alice@localhost"]))
    await archive.append([NewArchiveRow(ROOM, None, "01" + "0" * 24, ROOM, "n", T0, "<message/>")])
    assert await archive.purge_excess(4) == 6
    left = await archive.query("alice@localhost", ArchiveFilter(), PageRequest(max=50))
    assert _bodies(left.records) == ["6", "7", "8", "9"]
    assert await archive.count("bob@localhost") == 3
    # alice 6, bob 0-2 and the room message are older than 7 s
    assert await archive.purge_older(T0 + timedelta(seconds=7)) == 5
    assert await archive.count("alice@localhost") == 3
    assert await archive.count("bob@localhost") == 0
    assert await archive.count(ROOM) == 0


async def test_prefs_round_trip_and_unknown_account(archive: ArchiveRepository) -> None:
    assert await archive.prefs(ALICE) is None
    prefs = ArchivePrefs("roster", ("bob@localhost",), ("spam@example.org", "x@y"))
    await archive.set_prefs(ALICE, prefs)
    assert await archive.prefs(ALICE) == prefs
    await archive.set_prefs(ALICE, ArchivePrefs("never"))
    assert await archive.prefs(ALICE) == ArchivePrefs("never")
    with pytest.raises(AccountNotFound):
        await archive.set_prefs(("ghost", "localhost"), prefs)


async def test_deleting_an_account_deletes_its_archive(
    archive: ArchiveRepository, db: Database
) -> None:
    await archive.append(_rows(ALICE, 3, ["bob@localhost"]))
    await archive.append(_rows(BOB, 2, ["alice@localhost"]))
    await archive.set_prefs(ALICE, ArchivePrefs("always"))
    await db.accounts.delete(*ALICE)
    assert await archive.count("alice@localhost") == 0
    assert await archive.prefs(ALICE) is None
    assert await rows(db, "SELECT count(*) FROM archive_prefs") == [(0,)]
    assert await archive.count("bob@localhost") == 2
