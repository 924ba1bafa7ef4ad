"""`LegacyRepository`: legacy secrets, registration fields, pending registrations, invites."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatgate.auth.credentials import ScramKeys, derive_all, verify_password
from chatgate.storage.database import Database
from chatgate.storage.errors import AccountExists, AccountNotFound
from chatgate.storage.repositories.legacy import (
    DigestMd5Secret,
    InviteUnavailable,
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
    await db.legacy.create_account(*BILL, keys, SECRETS, {"email": "b@x.org", "name": ""})
    assert await db.accounts.all_scram_keys(*BILL) == keys
    assert await db.legacy.secrets(BILL) == SECRETS
    assert await db.legacy.fields(BILL) == {"email": "b@x.org"}
    with pytest.raises(AccountExists):
        await db.legacy.create_account(*BILL, keys, LegacySecrets(), {})


async def test_deleting_the_account_deletes_secrets_and_fields(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await db.legacy.create_account(*BILL, keys, SECRETS, {"email": "b@x.org"})
    assert await db.accounts.delete(*BILL)
    assert await db.legacy.secrets(BILL) is None
    assert await db.legacy.fields(BILL) == {}
    await db.legacy.create_account(*BILL, keys, LegacySecrets(), {})  # the name is free


async def test_change_password_replaces_keys_and_every_legacy_secret(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await db.legacy.create_account(*BILL, keys, SECRETS, {})
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
    await db.legacy.create_account(*BILL, keys, SECRETS, {})
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
    await db.legacy.create_pending(*BILL, keys, SECRETS, {"email": "b@x.org"}, address="192.0.2.1")
    with pytest.raises(AccountExists):
        await db.legacy.create_account(*BILL, keys, LegacySecrets(), {})
    [pending] = await db.legacy.pending()
    assert (pending.username, pending.fields, pending.address) == (
        "bill",
        {"email": "b@x.org"},
        "192.0.2.1",
    )
    assert await db.legacy.approve(*BILL)
    assert not await db.legacy.approve(*BILL)
    assert await db.accounts.all_scram_keys(*BILL) == keys
    assert await db.legacy.secrets(BILL) == SECRETS
    assert await db.legacy.pending() == []


async def test_reject_frees_the_name(db: Database, keys: dict[str, ScramKeys]) -> None:
    await db.legacy.create_pending(*BILL, keys, LegacySecrets(), {})
    assert await db.legacy.reject(*BILL)
    await db.legacy.create_account(*BILL, keys, LegacySecrets(), {})


async def test_invite_is_used_up_and_expires(db: Database, keys: dict[str, ScramKeys]) -> None:
    assert await db.legacy.add_invite("tok-1", "localhost", uses=2, expires=NOW + timedelta(1))
    assert not await db.legacy.add_invite("tok-1", "localhost")
    assert (await db.legacy.invite("tok-1", "localhost", NOW)) is not None
    assert await db.legacy.invite("tok-1", "localhost", NOW + timedelta(2)) is None
    assert await db.legacy.invite("tok-1", "example.org", NOW) is None
    await db.legacy.create_account(
        "a", "localhost", keys, LegacySecrets(), {}, invite="tok-1", now=NOW
    )
    await db.legacy.create_account(
        "b", "localhost", keys, LegacySecrets(), {}, invite="tok-1", now=NOW
    )
    with pytest.raises(InviteUnavailable):
        await db.legacy.create_account(
            "c", "localhost", keys, LegacySecrets(), {}, invite="tok-1", now=NOW
        )
    assert not await db.accounts.exists("c", "localhost")


async def test_invite_reserves_its_username(db: Database, keys: dict[str, ScramKeys]) -> None:
    await db.legacy.add_invite("tok-j", "localhost", username="juliet")
    with pytest.raises(AccountExists):
        await db.legacy.create_account("juliet", "localhost", keys, LegacySecrets(), {}, now=NOW)
    with pytest.raises(InviteUnavailable):
        await db.legacy.create_account(
            "romeo", "localhost", keys, LegacySecrets(), {}, invite="tok-j", now=NOW
        )
    await db.legacy.create_account(
        "juliet", "localhost", keys, LegacySecrets(), {}, invite="tok-j", now=NOW
    )


async def test_secrets_of_an_earlier_password_are_ignored(
    db: Database, keys: dict[str, ScramKeys]
) -> None:
    await db.legacy.create_account(*BILL, keys, SECRETS, {})
    # A password set by a tool that knows nothing of legacy secrets (the CLI).
    await db.accounts.set_credentials(*BILL, derive_all("changed-elsewhere"))
    assert await db.legacy.secrets(BILL) is None
    await db.legacy.set_secrets(BILL, LegacySecrets(digest_password="changed-elsewhere"))
    assert await db.legacy.secrets(BILL) == LegacySecrets(digest_password="changed-elsewhere")
