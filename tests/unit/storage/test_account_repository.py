"""AccountRepository: accounts, SCRAM keys, bulk creation and the cascade on delete."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chatgate.auth.credentials import ScramKeys, derive_all, verify_password
from chatgate.storage.database import Database
from chatgate.storage.errors import AccountExists, AccountNotFound
from chatgate.storage.records import RosterItem
from chatgate.storage.repositories.accounts import NameHolder
from chatgate.storage.repositories.legacy_records import LegacySecrets
from chatgate.storage.repositories.offline import OfflineQuota

from .conftest import ALICE, BOB, rows

QUOTA = OfflineQuota(messages=10, bytes=1 << 20, sender_messages=10, sender_bytes=1 << 20)

PER_ACCOUNT_TABLES = (
    "scram_credentials",
    "roster_items",
    "subscription_requests",
    "roster_versions",
    "offline_messages",
    "vcards",
)


async def test_create_stores_every_hash(db: Database, keys: dict[str, ScramKeys]) -> None:
    await db.accounts.create(*ALICE, keys)
    assert await db.accounts.exists(*ALICE)
    assert await db.accounts.all_scram_keys(*ALICE) == keys
    assert await db.accounts.scram_keys(*ALICE, "sha256") == keys["sha256"]


async def test_create_twice_raises_account_exists(db: Database, alice: tuple[str, str]) -> None:
    with pytest.raises(AccountExists):
        await db.accounts.create(*alice, derive_all("other"))
    assert await db.accounts.count() == 1


async def test_same_username_on_two_domains_are_two_accounts(
    db: Database, alice: tuple[str, str]
) -> None:
    await db.accounts.create("alice", "example.org", {})
    assert await db.accounts.count() == 2
    assert await db.accounts.count("example.org") == 1


async def test_unknown_user_has_no_keys(db: Database) -> None:
    assert await db.accounts.scram_keys(*BOB, "sha256") is None
    assert await db.accounts.all_scram_keys(*BOB) == {}
    assert not await db.accounts.exists(*BOB)


async def test_set_credentials_replaces_every_hash(db: Database, alice: tuple[str, str]) -> None:
    new = derive_all("new password", hashes=("sha256",))
    await db.accounts.set_credentials(*alice, new)
    stored = await db.accounts.all_scram_keys(*alice)
    assert set(stored) == {"sha256"}  # no key of the old password survives
    assert verify_password("new password", stored["sha256"])
    assert not verify_password("correct horse", stored["sha256"])


async def test_set_credentials_of_unknown_user_raises(db: Database) -> None:
    with pytest.raises(AccountNotFound):
        await db.accounts.set_credentials(*BOB, derive_all("x"))


async def test_credentials_keyed_under_the_wrong_hash_are_refused(db: Database) -> None:
    keys = derive_all("x", hashes=("sha1",))
    with pytest.raises(ValueError):
        await db.accounts.create(*BOB, {"sha256": keys["sha1"]})
    assert not await db.accounts.exists(*BOB)


async def test_list_orders_by_domain_then_username(db: Database) -> None:
    before = datetime.now(UTC)
    for username, domain in [("zed", "a.example"), ("bob", "b.example"), ("amy", "a.example")]:
        await db.accounts.create(username, domain, {})
    listed = await db.accounts.list()
    assert [(a.username, a.domain) for a in listed] == [
        ("amy", "a.example"),
        ("zed", "a.example"),
        ("bob", "b.example"),
    ]
    assert all(a.created.tzinfo is UTC and a.created >= before for a in listed)
    assert [a.username for a in await db.accounts.list("b.example")] == ["bob"]


async def test_delete_cascades_to_everything_the_account_owns(
    db: Database, alice: tuple[str, str]
) -> None:
    await db.accounts.create(*BOB, derive_all("bob"))
    for owner in (alice, BOB):
        await db.roster.put(owner, RosterItem("carol@example.org"))
        await db.roster.add_pending_in(owner, "dave@example.org", "hi")
        await db.offline.store(owner, "x@localhost", "<message/>", datetime.now(UTC), QUOTA)
        await db.vcards.put(owner, "<vCard xmlns='vcard-temp'/>")

    assert await db.accounts.delete(*alice)

    assert await rows(db, "SELECT count(*) FROM accounts WHERE username = 'alice'") == [(0,)]
    for table in PER_ACCOUNT_TABLES:
        # bob's rows remain; alice's are gone
        expected = 3 if table == "scram_credentials" else 1
        assert await rows(db, f"SELECT count(*) FROM {table}") == [(expected,)], table
    assert await db.roster.items(alice) == []
    assert await db.offline.count(alice) == 0
    assert await db.vcards.get(alice) is None


async def test_delete_unknown_user_returns_false(db: Database) -> None:
    assert not await db.accounts.delete(*BOB)


async def test_create_many_skips_existing_and_repeated(
    db: Database, alice: tuple[str, str], keys: dict[str, ScramKeys]
) -> None:
    rows = [(f"user{i}", "localhost", keys) for i in range(1200)]
    rows.insert(3, ("alice", "localhost", keys))
    rows.append(("user7", "localhost", keys))
    created, skipped = await db.accounts.create_many(rows)
    assert len(created) == 1200
    assert created[:2] == ["user0@localhost", "user1@localhost"]
    assert skipped == ["alice@localhost", "user7@localhost"]
    assert await db.accounts.count() == 1201
    assert await db.accounts.all_scram_keys("user1199", "localhost") == keys
    assert await db.roster.version(("user1199", "localhost")) == 0


async def test_set_credentials_many_reports_missing(db: Database, alice: tuple[str, str]) -> None:
    new = derive_all("fresh")
    updated, missing = await db.accounts.set_credentials_many(
        [("alice", "localhost", new), ("nobody", "localhost", new)]
    )
    assert (updated, missing) == (["alice@localhost"], ["nobody@localhost"])
    assert await db.accounts.all_scram_keys(*alice) == new
    assert not await db.accounts.exists("nobody", "localhost")


async def test_existing_answers_for_many_pairs(db: Database, alice: tuple[str, str]) -> None:
    pairs = [alice, BOB, ("alice", "elsewhere")]
    assert await db.accounts.existing(pairs) == {alice}


async def test_standing_says_which_accounts_exist_and_are_locked(
    db: Database, alice: tuple[str, str]
) -> None:
    await db.accounts.create("carol", "localhost", derive_all("pw"))
    assert await db.accounts.set_locked("carol", "localhost", True)
    pairs = [alice, BOB, ("carol", "localhost"), ("alice", "elsewhere")]
    standing = await db.accounts.standing(pairs)
    assert {owner: locked for owner, (locked, _) in standing.items()} == {
        alice: False,
        ("carol", "localhost"): True,
    }
    summary = await db.accounts.summary("carol", "localhost")
    assert summary is not None and standing[("carol", "localhost")][1] == summary[0]


async def test_only_identities_of_anonymous_logins_are_deleted_as_such(
    db: Database, alice: tuple[str, str]
) -> None:
    await db.accounts.create("guest1", "localhost", {}, anonymous=True)
    await db.accounts.create("guest2", "localhost", {}, anonymous=True)
    assert await db.accounts.count("localhost", anonymous=False) == 1
    assert await db.accounts.count("localhost", anonymous=True) == 2
    assert await db.accounts.count("localhost") == 3
    assert await db.accounts.delete_anonymous("localhost", "guest1") == 1
    assert await db.accounts.delete_anonymous("localhost", alice[0]) == 0
    assert await db.accounts.delete_anonymous("localhost") == 1
    assert await db.accounts.exists(*alice)
    assert await db.accounts.count("localhost", anonymous=True) == 0


# ---------------------------------------------------------------- locks (migration 0007)


async def test_a_lock_is_kept_until_unlocked(db: Database, alice: tuple[str, str]) -> None:
    assert await db.accounts.locked(*alice) is False
    assert await db.accounts.set_locked(*alice, True)
    assert not await db.accounts.set_locked(*alice, True)  # already locked: no change
    assert await db.accounts.locked(*alice) is True
    assert await db.accounts.locked_accounts() == {alice}
    assert await db.accounts.locked_accounts("elsewhere") == set()
    assert await db.accounts.set_locked(*alice, False)
    assert await db.accounts.locked(*alice) is False
    assert await db.accounts.locked_accounts() == set()


async def test_locking_an_unknown_account_raises(db: Database) -> None:
    assert await db.accounts.locked(*BOB) is None
    with pytest.raises(AccountNotFound):
        await db.accounts.set_locked(*BOB, True)
    assert not await db.accounts.exists(*BOB)


async def test_login_reads_say_which_accounts_are_locked(
    db: Database, alice: tuple[str, str], keys: dict[str, ScramKeys]
) -> None:
    await db.accounts.create(*BOB, derive_all("bob"))
    await db.accounts.set_locked(*BOB, True)
    assert await db.accounts.login_keys(*alice) == (keys, False)
    bob_keys, locked = await db.accounts.login_keys(*BOB)
    assert locked and set(bob_keys) == {"sha1", "sha256", "sha512"}
    assert await db.accounts.login_keys("nobody", "localhost") == ({}, False)
    loaded = await db.accounts.scram_keys_of_many(10)
    assert loaded.keys == {alice: keys}  # a locked account's keys are not loaded
    assert loaded.locked == {BOB}
    assert loaded.complete
    # The other reads answer for a locked account as for any.
    assert await db.accounts.exists(*BOB)
    assert set(await db.accounts.all_scram_keys(*BOB)) == {"sha1", "sha256", "sha512"}


async def test_name_holder_names_what_holds_a_name(
    db: Database, alice: tuple[str, str], keys: dict[str, ScramKeys]
) -> None:
    now = datetime.now(UTC)
    assert await db.accounts.name_holder(*alice, now) is NameHolder.ACCOUNT
    await db.accounts.set_locked(*alice, True)
    assert await db.accounts.name_holder(*alice, now) is NameHolder.ACCOUNT
    await db.pending_registrations.create_pending("newbie", "localhost", keys, LegacySecrets(), {})
    assert await db.accounts.name_holder("newbie", "localhost", now) is NameHolder.PENDING
    assert await db.accounts.name_holder("newbie", "elsewhere", now) is None
    await db.invitations.add_invite("t" * 24, "localhost", username="carol", uses=1, expires=None)
    assert await db.accounts.name_holder("carol", "localhost", now) is NameHolder.INVITATION
    soon = now + timedelta(hours=1)
    await db.invitations.add_invite("u" * 24, "localhost", username="dave", uses=1, expires=soon)
    assert await db.accounts.name_holder("dave", "localhost", now) is NameHolder.INVITATION
    later = soon + timedelta(seconds=1)
    assert await db.accounts.name_holder("dave", "localhost", later) is None  # expired
    assert await db.accounts.name_holder(*BOB, now) is None


async def test_page_is_keyset_paged_by_domain_then_username(db: Database) -> None:
    for name in ("alice", "alica", "bob"):
        await db.accounts.create(name, "localhost", {})
    await db.accounts.create("alice", "other.org", {})
    first = await db.accounts.page(limit=2)
    assert [(u, d) for u, d, _, _ in first] == [("alica", "localhost"), ("alice", "localhost")]
    rest = await db.accounts.page(after=("localhost", "alice"), limit=10)
    assert [(u, d) for u, d, _, _ in rest] == [("bob", "localhost"), ("alice", "other.org")]


async def test_page_search_matches_names_or_jids_and_escapes_wildcards(db: Database) -> None:
    for name in ("al_x", "alx", "al%y", "bob"):
        await db.accounts.create(name, "localhost", {})
    await db.accounts.create("bob", "other.org", {})
    await db.accounts.set_locked("bob", "other.org", True)
    found = await db.accounts.page(search="AL_")
    assert [u for u, _, _, _ in found] == ["al_x"]
    assert await db.accounts.count_matching(search="al") == 3
    by_jid = await db.accounts.page(search="bob@other")
    assert [(u, d, locked) for u, d, _, locked in by_jid] == [("bob", "other.org", True)]
    assert await db.accounts.count_matching(domain="other.org") == 1


async def test_summary_of_one_account(db: Database) -> None:
    await db.accounts.create("alice", "localhost", {})
    found = await db.accounts.summary("alice", "localhost")
    assert found is not None and found[1] is False
    assert await db.accounts.summary("alice", "other.org") is None
