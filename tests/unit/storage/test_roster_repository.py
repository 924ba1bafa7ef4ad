"""RosterRepository: items, versions (RFC 6121 §2.6) and pending inbound requests."""

from __future__ import annotations

import pytest

from chatgate.storage.database import Database
from chatgate.storage.errors import AccountNotFound
from chatgate.storage.records import RosterItem, Subscription

from .conftest import BOB

JULIET = "juliet@example.com"


async def test_new_account_has_version_zero_and_no_items(
    db: Database, alice: tuple[str, str]
) -> None:
    assert await db.roster.version(alice) == 0
    assert await db.roster.items(alice) == []
    assert await db.roster.count(alice) == 0


async def test_every_put_increases_the_version(db: Database, alice: tuple[str, str]) -> None:
    first = await db.roster.put(alice, RosterItem(JULIET, "Juliet"))
    second = await db.roster.put(alice, RosterItem(JULIET, "Jules", Subscription.TO))
    third = await db.roster.put(alice, RosterItem("nurse@example.com"))
    assert first < second < third
    assert await db.roster.version(alice) == third


async def test_put_replaces_the_item_for_the_same_jid(db: Database, alice: tuple[str, str]) -> None:
    await db.roster.put(alice, RosterItem(JULIET, "Juliet", groups=("Friends",)))
    item = RosterItem(JULIET, None, Subscription.BOTH, ask=True, approved=True, groups=("Ünï", "b"))
    await db.roster.put(alice, item)
    assert await db.roster.items(alice) == [item]
    assert await db.roster.item(alice, JULIET) == item
    assert await db.roster.count(alice) == 1


async def test_remove_bumps_the_version_and_absent_returns_none(
    db: Database, alice: tuple[str, str]
) -> None:
    put = await db.roster.put(alice, RosterItem(JULIET))
    removed = await db.roster.remove(alice, JULIET)
    assert removed is not None and removed > put
    assert await db.roster.remove(alice, JULIET) is None
    assert await db.roster.version(alice) == removed
    assert await db.roster.item(alice, JULIET) is None


async def test_writes_for_unknown_account_raise(db: Database) -> None:
    with pytest.raises(AccountNotFound):
        await db.roster.put(BOB, RosterItem(JULIET))
    with pytest.raises(AccountNotFound):
        await db.roster.remove(BOB, JULIET)
    with pytest.raises(AccountNotFound):
        await db.roster.add_pending_in(BOB, JULIET, None)


async def test_rosters_are_per_account(db: Database, alice: tuple[str, str]) -> None:
    await db.accounts.create(*BOB, {})
    await db.roster.put(alice, RosterItem(JULIET))
    assert await db.roster.items(BOB) == []
    assert await db.roster.version(BOB) == 0


async def test_pending_in_add_refresh_and_remove(db: Database, alice: tuple[str, str]) -> None:
    await db.roster.add_pending_in(alice, JULIET, "let me in")
    await db.roster.add_pending_in(alice, "nurse@example.com", None)
    await db.roster.add_pending_in(alice, JULIET, "again")  # refresh, not a duplicate
    assert await db.roster.pending_in(alice) == [JULIET, "nurse@example.com"]
    assert await db.roster.version(alice) == 0  # not a roster change
    assert await db.roster.remove_pending_in(alice, JULIET)
    assert not await db.roster.remove_pending_in(alice, JULIET)
    assert not await db.roster.remove_pending_in(BOB, JULIET)
    assert await db.roster.pending_in(alice) == ["nurse@example.com"]


async def test_forget_contacts_on_a_domain_spares_lookalike_domains(
    db: Database, alice: tuple[str, str]
) -> None:
    for jid in ("g1@guest.example", "g2@guest.example", "x@sub.guest.example", "y@guestXexample"):
        await db.roster.put(alice, RosterItem(jid=jid, subscription=Subscription.NONE))
    await db.roster.add_pending_in(alice, "g3@guest.example", None)
    await db.roster.add_pending_in(alice, "z@gu_st.example", None)
    assert await db.roster.forget_contacts_on("gu_st.example") == 1  # '_' is no wildcard
    before = await db.roster.version(alice)
    assert await db.roster.forget_contacts_on("guest.example") == 3
    assert [i.jid for i in await db.roster.items(alice)] == [
        "x@sub.guest.example",
        "y@guestXexample",
    ]
    assert await db.roster.pending_in(alice) == []
    assert await db.roster.version(alice) == before + 1
    assert await db.roster.forget_contacts_on("guest.example") == 0
