"""The repositories split out of the old `LegacyRepository`: legacy secrets
(`db.legacy`), accounts created as registration does and their fields
(`db.registration`), pending registrations (`db.pending_registrations`) and
invitations (`db.invitations`), and the writes that span them atomically."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatgate.auth.credentials import ScramKeys, derive_all, verify_password
from chatgate.storage.database import Database
from chatgate.storage.errors import AccountExists, AccountNotFound
from chatgate.storage.repositories.invitations import InviteUnavailable, invite_hash
from chatgate.storage.repositories.legacy import (
    DigestMd5Secret,
    LegacySecrets,
    ZeroKnowledgeChain,
)

BILL = ("bill", "localhost")
NOW = datetime(2024, 12, 1, tzinfo=UTC)
SECRETS = LegacySecrets(
    "Calli0pe", DigestMd5Secret("localhost", b"\x01" * 16), ZeroKnowledgeChain("ABCDE", 500, "ff")
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}")
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(scope="module")
def keys() -> dict[str, ScramKeys]:
    return derive_all("Calli0pe")


async def test_create_account_stores_keys_secrets_and_fields_together(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await db.registration.create_account(*BILL, keys, SECRETS, {"email": "b@x.org", "name": ""})
    assert await db.accounts.all_scram_keys(*BILL) == keys
    assert await db.legacy.secrets(BILL) == SECRETS
    assert await db.registration.fields(BILL) == {"email": "b@x.org"}
    with pytest.raises(AccountExists):
        await db.registration.create_account(*BILL, keys, LegacySecrets(), {})


async def test_deleting_the_account_deletes_secrets_and_fields(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await db.registration.create_account(*BILL, keys, SECRETS, {"email": "b@x.org"})
    assert await db.accounts.delete(*BILL)
    assert await db.legacy.secrets(BILL) is None
    assert await db.registration.fields(BILL) == {}
    await db.registration.create_account(*BILL, keys, LegacySecrets(), {})  # the name is free


async def test_a_locked_account_has_no_legacy_secrets_until_unlocked(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    """XEP-0078 digest and zero-knowledge logins read these: a lock must stop them."""
    await db.registration.create_account(*BILL, keys, SECRETS, {})
    assert await db.accounts.set_locked(*BILL, True)
    assert await db.legacy.secrets(BILL) is None
    assert await db.accounts.set_locked(*BILL, False)
    assert await db.legacy.secrets(BILL) == SECRETS


async def test_change_password_replaces_keys_and_every_legacy_secret(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await db.registration.create_account(*BILL, keys, SECRETS, {})
    new_keys = {"sha256": derive_all("new-password", hashes=("sha256",))["sha256"]}
    await db.legacy.change_password(BILL, new_keys, LegacySecrets(digest_password="new-password"))
    stored = await db.accounts.all_scram_keys(*BILL)
    assert set(stored) == {"sha256"} and verify_password("new-password", stored["sha256"])
    assert await db.legacy.secrets(BILL) == LegacySecrets(digest_password="new-password")
    await db.legacy.change_password(BILL, new_keys, LegacySecrets())
    assert await db.legacy.secrets(BILL) is None
    with pytest.raises(AccountNotFound):
        await db.legacy.change_password(("nobody", "localhost"), new_keys, LegacySecrets())


async def test_advance_chain_is_compare_and_set(db: Database, keys: dict[str, ScramKeys]) -> None:
    await db.registration.create_account(*BILL, keys, SECRETS, {})
    old = SECRETS.zero_knowledge
    assert old is not None
    new = ZeroKnowledgeChain("ABCDE", 499, "ee")
    assert await db.legacy.advance_chain(BILL, old, new)
    assert not await db.legacy.advance_chain(BILL, old, ZeroKnowledgeChain("ABCDE", 499, "dd"))
    stored = await db.legacy.secrets(BILL)
    assert stored is not None and stored.zero_knowledge == new


async def test_pending_registration_holds_the_name_until_approved(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await db.pending_registrations.create_pending(
        *BILL, keys, SECRETS, {"email": "b@x.org"}, address="192.0.2.1"
    )
    with pytest.raises(AccountExists):
        await db.registration.create_account(*BILL, keys, LegacySecrets(), {})
    [pending] = await db.pending_registrations.pending()
    assert (pending.username, pending.fields, pending.address) == (
        "bill",
        {"email": "b@x.org"},
        "192.0.2.1",
    )
    assert await db.pending_registrations.approve(*BILL)
    assert not await db.pending_registrations.approve(*BILL)
    assert await db.accounts.all_scram_keys(*BILL) == keys
    assert await db.legacy.secrets(BILL) == SECRETS
    assert await db.pending_registrations.pending() == []


async def test_reject_frees_the_name(db: Database, keys: dict[str, ScramKeys]) -> None:
    await db.pending_registrations.create_pending(*BILL, keys, LegacySecrets(), {})
    assert await db.pending_registrations.reject(*BILL)
    await db.registration.create_account(*BILL, keys, LegacySecrets(), {})


async def test_invite_is_used_up_and_expires(db: Database, keys: dict[str, ScramKeys]) -> None:
    assert await db.invitations.add_invite("tok-1", "localhost", uses=2, expires=NOW + timedelta(1))
    assert not await db.invitations.add_invite("tok-1", "localhost")
    assert (await db.invitations.invite("tok-1", "localhost", NOW)) is not None
    assert await db.invitations.invite("tok-1", "localhost", NOW + timedelta(2)) is None
    assert await db.invitations.invite("tok-1", "example.org", NOW) is None
    await db.registration.create_account(
        "a", "localhost", keys, LegacySecrets(), {}, invite="tok-1", now=NOW
    )
    await db.registration.create_account(
        "b", "localhost", keys, LegacySecrets(), {}, invite="tok-1", now=NOW
    )
    with pytest.raises(InviteUnavailable):
        await db.registration.create_account(
            "c", "localhost", keys, LegacySecrets(), {}, invite="tok-1", now=NOW
        )
    assert not await db.accounts.exists("c", "localhost")


async def test_invite_reserves_its_username(db: Database, keys: dict[str, ScramKeys]) -> None:
    await db.invitations.add_invite("tok-j", "localhost", username="juliet")
    with pytest.raises(AccountExists):
        await db.registration.create_account(
            "juliet", "localhost", keys, LegacySecrets(), {}, now=NOW
        )
    with pytest.raises(InviteUnavailable):
        await db.registration.create_account(
            "romeo", "localhost", keys, LegacySecrets(), {}, invite="tok-j", now=NOW
        )
    await db.registration.create_account(
        "juliet", "localhost", keys, LegacySecrets(), {}, invite="tok-j", now=NOW
    )


async def test_secrets_of_an_earlier_password_are_ignored(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await db.registration.create_account(*BILL, keys, SECRETS, {})
    # A password set by a tool that knows nothing of legacy secrets.
    await db.accounts.set_credentials(*BILL, derive_all("changed-elsewhere"))
    assert await db.legacy.secrets(BILL) is None
    await db.legacy.set_secrets(BILL, LegacySecrets(digest_password="changed-elsewhere"))
    assert await db.legacy.secrets(BILL) == LegacySecrets(digest_password="changed-elsewhere")


async def test_approve_refuses_a_name_an_account_took_meanwhile(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await db.pending_registrations.create_pending(*BILL, keys, SECRETS, {})
    await db.accounts.create(*BILL, {})  # a tool that ignores pending names
    with pytest.raises(AccountExists):
        await db.pending_registrations.approve(*BILL)
    assert [p.username for p in await db.pending_registrations.pending()] == [
        "bill"
    ]  # kept, for reject
    assert await db.pending_registrations.reject(*BILL)


async def test_create_accounts_stores_keys_and_secrets_and_reports_held_names(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await db.accounts.create("old", "localhost", keys)
    await db.pending_registrations.create_pending("waiting", "localhost", keys, LegacySecrets(), {})
    await db.invitations.add_invite("tok-r", "localhost", username="reserved")
    await db.invitations.add_invite("tok-x", "localhost", username="expired", expires=NOW)
    rows = [
        (name, "localhost", keys, SECRETS)
        for name in ("bill", "old", "waiting", "reserved", "expired", "bill")
    ]
    rows.append(("plain", "localhost", keys, LegacySecrets()))
    created, existing, held = await db.registration.create_accounts(rows, now=NOW + timedelta(1))
    assert created == ["bill@localhost", "expired@localhost", "plain@localhost"]
    assert existing == ["old@localhost", "bill@localhost"]
    assert held == ["waiting@localhost", "reserved@localhost"]
    assert await db.accounts.all_scram_keys(*BILL) == keys
    # Bound to the keys stored with them: `secrets` returns only rows of the current password.
    assert await db.legacy.secrets(BILL) == SECRETS
    assert await db.legacy.secrets(("expired", "localhost")) == SECRETS
    assert await db.legacy.secrets(("plain", "localhost")) is None


async def test_change_passwords_replaces_keys_and_secrets_together(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await db.registration.create_accounts(
        [(*BILL, keys, SECRETS), ("ann", "localhost", keys, SECRETS)], now=NOW
    )
    new_keys = derive_all("new-password")
    fresh = LegacySecrets(zero_knowledge=ZeroKnowledgeChain("F00D", 500, "aa"))
    updated, missing = await db.legacy.change_passwords(
        [
            (*BILL, new_keys, fresh),
            ("ann", "localhost", new_keys, LegacySecrets()),
            ("nobody", "localhost", new_keys, fresh),
        ]
    )
    assert updated == ["bill@localhost", "ann@localhost"]
    assert missing == ["nobody@localhost"]
    assert await db.accounts.all_scram_keys(*BILL) == new_keys
    assert await db.legacy.secrets(BILL) == fresh
    # No secret of the old password survives, even where none is configured now.
    assert await db.legacy.secrets(("ann", "localhost")) is None
    assert not await db.accounts.exists("nobody", "localhost")


async def test_invites_lists_every_invitation_with_its_state(db: Database) -> None:
    await db.invitations.add_invite("tok-1", "localhost", uses=2, expires=NOW + timedelta(1))
    await db.invitations.add_invite("tok-2", "example.net", username="juliet")
    invites = await db.invitations.invites()
    assert {(i.token_hash, i.domain, i.username, i.uses_left) for i in invites} == {
        (invite_hash("tok-1"), "localhost", None, 2),
        (invite_hash("tok-2"), "example.net", "juliet", 1),
    }
    [mine] = await db.invitations.invites("localhost")
    assert mine.usable(NOW) and not mine.usable(NOW + timedelta(2))
    assert mine.expires == NOW + timedelta(1)


async def test_revoke_invite_by_token_frees_its_reserved_name(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await db.invitations.add_invite("tok-j", "localhost", username="juliet")
    assert await db.invitations.revoke_invite("tok-j")
    assert not await db.invitations.revoke_invite("tok-j")
    assert await db.invitations.invite("tok-j", "localhost", NOW) is None
    await db.registration.create_account("juliet", "localhost", keys, LegacySecrets(), {}, now=NOW)


async def test_revoke_invite_hash_deletes_only_an_unambiguous_match(db: Database) -> None:
    tokens = [f"tok-{n}" for n in range(40)]
    for token in tokens:
        await db.invitations.add_invite(token, "localhost")
    hashes = [invite_hash(t) for t in tokens]
    # Among 40 hashes two share a first hex digit (pigeonhole: only 16 digits).
    digit = next(h[0] for h in hashes if sum(x[0] == h[0] for x in hashes) > 1)
    assert len(await db.invitations.revoke_invite_hash(digit)) > 1
    assert len(await db.invitations.invites()) == 40  # nothing deleted
    assert await db.invitations.revoke_invite_hash(hashes[0][:12]) == [hashes[0]]
    assert await db.invitations.revoke_invite_hash(hashes[0][:12]) == []
    assert await db.invitations.revoke_invite_hash("not-hex%") == []
    assert len(await db.invitations.invites()) == 39


def test_each_table_is_written_by_its_own_repository_module() -> None:
    """One repository per aggregate (issue 10 item 12): every write to a table is in the
    module that owns it; the others reach it through that module's functions."""
    import re

    from chatgate.storage import repositories

    owners = {
        "LegacySecret": "legacy.py",
        "RegistrationField": "registration.py",
        "PendingRegistration": "pending_registrations.py",
        "RegistrationInvite": "invitations.py",
    }
    folder = Path(repositories.__file__).parent
    writers: dict[str, set[str]] = {model: set() for model in owners}
    for path in folder.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        for model in owners:
            if re.search(rf"\b(insert|update|delete)\({model}\)", text):
                writers[model].add(path.name)
    assert writers == {model: {module} for model, module in owners.items()}
