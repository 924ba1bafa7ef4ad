"""AccountService over a real SQLite database: what each change stores, what it
refuses, and that every stored change (and nothing else) is told to the notifier."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chatgate.accounts import (
    AccountService,
    ChangeKind,
    CredentialChange,
    Deletion,
    InviteUnavailable,
    NameHolder,
    NameTaken,
    NoSuchAccount,
)
from chatgate.auth.credentials import verify_password
from chatgate.auth.policy import NameUnavailable, PolicyViolation
from chatgate.storage.database import Database
from chatgate.storage.records import RosterItem

from .conftest import Recorder, make_service

ALICE = ("alice", "localhost")


async def test_create_stores_keys_and_the_configured_legacy_secrets(
    service: AccountService, db: Database, recorder: Recorder
) -> None:
    assert await service.create("Alice", "localhost", "correct horse") == "alice"
    keys = await db.accounts.all_scram_keys(*ALICE)
    assert set(keys) == {"sha1", "sha256", "sha512"}
    assert all(k.iterations == 4096 for k in keys.values())
    assert verify_password("correct horse", keys["sha256"])
    legacy = await db.legacy.secrets(ALICE)
    assert legacy is not None and legacy.digest_password == "correct horse"
    assert legacy.zero_knowledge is not None and legacy.digest_md5 is None
    assert recorder.changes == [CredentialChange("alice", "localhost", ChangeKind.CREATED)]


async def test_create_refuses_what_the_policy_refuses_and_stores_nothing(
    service: AccountService, db: Database, recorder: Recorder
) -> None:
    with pytest.raises(PolicyViolation, match="at least 8"):
        await service.create("alice", "localhost", "short")
    with pytest.raises(NameUnavailable):
        await service.create("admin", "localhost", "correct horse")
    with pytest.raises(PolicyViolation, match="invalid username"):
        await service.create("a b@", "localhost", "correct horse")
    assert await db.accounts.count() == 0 and recorder.changes == []
    # An operator may make a reserved name on purpose.
    assert await service.create("admin", "localhost", "correct horse", allow_reserved=True)


async def test_a_name_held_by_anything_is_refused_with_what_holds_it(
    service: AccountService, db: Database, recorder: Recorder
) -> None:
    await service.create(*ALICE, "correct horse")
    await service.hold("newbie", "localhost", "newbie-pw-1")
    await db.invitations.add_invite("t" * 24, "localhost", username="carol")
    for name, holder in (
        ("alice", NameHolder.ACCOUNT),
        ("newbie", NameHolder.PENDING),
        ("carol", NameHolder.INVITATION),
    ):
        assert await service.name_holder(name, "localhost") is holder
        with pytest.raises(NameTaken) as taken:
            await service.create(name, "localhost", "another pw 1")
        assert taken.value.holder is holder
        with pytest.raises(NameTaken):
            await service.hold(name, "localhost", "another pw 1")
    assert await service.name_holder("dave", "localhost") is None
    assert recorder.kinds == ["created", "held"]
    # The invitation's own token takes the name it reserves.
    await service.create("carol", "localhost", "carol-pw-1", invite="t" * 24)
    assert await service.name_holder("carol", "localhost") is NameHolder.ACCOUNT


async def test_an_invitation_that_cannot_be_redeemed_creates_nothing(
    service: AccountService, db: Database, recorder: Recorder
) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    await db.invitations.add_invite("e" * 24, "localhost", expires=past)
    with pytest.raises(InviteUnavailable):
        await service.create(*ALICE, "correct horse", invite="e" * 24)
    assert not await service.exists(*ALICE) and recorder.changes == []


async def test_a_held_registration_is_approved_or_rejected(
    service: AccountService, db: Database, recorder: Recorder
) -> None:
    await service.hold("newbie", "localhost", "newbie-pw-1", fields={}, address="192.0.2.1")
    assert not await service.exists("newbie", "localhost")
    assert await service.approve("newbie", "localhost")
    assert await service.exists("newbie", "localhost")
    assert not await service.approve("newbie", "localhost")
    await service.hold("other", "localhost", "other-pw-1")
    assert await service.reject("other", "localhost")
    assert not await service.reject("other", "localhost")
    assert await service.name_holder("other", "localhost") is None
    assert recorder.kinds == ["held", "resolved", "held", "resolved"]


async def test_approving_a_name_an_account_took_keeps_the_registration(
    service: AccountService, db: Database
) -> None:
    await service.hold(*ALICE, "newbie-pw-1")
    await db.accounts.create(*ALICE, {})  # an old tool that ignored the pending name
    with pytest.raises(NameTaken) as taken:
        await service.approve(*ALICE)
    assert taken.value.holder is NameHolder.ACCOUNT
    assert [p.username for p in await db.pending_registrations.pending()] == ["alice"]


async def test_change_password_replaces_every_key_and_secret(
    service: AccountService, db: Database, recorder: Recorder
) -> None:
    await service.create(*ALICE, "correct horse")
    before = await db.legacy.secrets(ALICE)
    await service.change_password(*ALICE, "battery staple")
    keys = await db.accounts.all_scram_keys(*ALICE)
    assert verify_password("battery staple", keys["sha512"])
    assert not verify_password("correct horse", keys["sha512"])
    after = await db.legacy.secrets(ALICE)
    assert after is not None and after.digest_password == "battery staple"
    assert before is not None and after.zero_knowledge != before.zero_knowledge
    with pytest.raises(PolicyViolation):
        await service.change_password(*ALICE, "short")
    with pytest.raises(NoSuchAccount):
        await service.change_password("nobody", "localhost", "long enough 1")
    assert recorder.kinds == ["created", "password"]


async def test_lock_and_unlock_are_told_only_when_they_change_something(
    service: AccountService, recorder: Recorder
) -> None:
    await service.create(*ALICE, "correct horse")
    assert await service.locked(*ALICE) is False
    assert await service.lock(*ALICE)
    assert not await service.lock(*ALICE)
    assert await service.locked(*ALICE) is True
    assert [a.locked for a in await service.accounts()] == [True]
    assert await service.unlock(*ALICE)
    assert not await service.unlock(*ALICE)
    assert recorder.kinds == ["created", "locked", "unlocked"]
    with pytest.raises(NoSuchAccount):
        await service.lock("nobody", "localhost")
    assert await service.locked("nobody", "localhost") is None


async def test_delete_takes_everything_hanging_off_the_account(
    service: AccountService, db: Database, recorder: Recorder
) -> None:
    await service.create(*ALICE, "correct horse")
    await db.roster.put(ALICE, RosterItem("bob@localhost"))
    await db.roster.add_pending_in(ALICE, "carol@localhost", None)
    await db.vcards.put(ALICE, "<vCard xmlns='vcard-temp'/>")
    await db.stream_keys.put(ALICE, b"\x00" * 32, "k" * 18, b"sealed")
    assert await service.delete(*ALICE) == Deletion(account=True, pending=False)
    assert not await service.exists(*ALICE)
    assert await db.roster.items(ALICE) == [] and await db.vcards.get(ALICE) is None
    assert await db.legacy.secrets(ALICE) is None
    assert await db.stream_keys.owner_of(b"\x00" * 32) is None
    assert await service.name_holder(*ALICE) is None
    # A pending registration of the name goes too; nothing at all is no change.
    await service.hold(*ALICE, "newbie-pw-1")
    assert await service.delete(*ALICE) == Deletion(account=False, pending=True)
    assert await service.delete(*ALICE) == Deletion(account=False, pending=False)
    assert recorder.kinds == ["created", "deleted", "held", "resolved"]


class Live:
    """A server's live side, recording the order of what it is asked."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls: list[tuple[str, bool]] = []

    async def withdraw(self, username: str, domain: str) -> None:
        # Still there: presence must withdraw what others hold while it exists.
        self.calls.append(("withdraw", await self.db.accounts.exists(username, domain)))

    def end_sessions(self, username: str, domain: str, text: str) -> int:
        self.calls.append((f"end: {text}", False))
        return 1


async def test_in_a_server_delete_withdraws_first_and_lock_ends_sessions(
    db: Database, recorder: Recorder
) -> None:
    live = Live(db)
    service = make_service(db, recorder, live)
    await service.create(*ALICE, "correct horse")
    await service.lock(*ALICE)
    await service.delete(*ALICE, end_sessions=False)  # in-band <remove/> closes them itself
    await service.create(*ALICE, "correct horse")
    await service.delete(*ALICE)
    assert live.calls == [
        ("end: the account was locked", False),
        ("withdraw", True),
        ("withdraw", True),
        ("end: the account was removed", False),
    ]
