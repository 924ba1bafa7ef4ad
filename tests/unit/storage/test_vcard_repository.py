"""VCardRepository: one document per account."""

from __future__ import annotations

import pytest

from chatgate.storage.database import Database
from chatgate.storage.errors import AccountNotFound

from .conftest import BOB


async def test_no_vcard_until_put_then_replaced(db: Database, alice: tuple[str, str]) -> None:
    assert await db.vcards.get(alice) is None
    await db.vcards.put(alice, "<vCard xmlns='vcard-temp'><FN>A</FN></vCard>")
    await db.vcards.put(alice, "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>")
    assert await db.vcards.get(alice) == "<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>"


async def test_put_for_unknown_account_raises(db: Database) -> None:
    with pytest.raises(AccountNotFound):
        await db.vcards.put(BOB, "<vCard xmlns='vcard-temp'/>")
