"""vCards (XEP-0054): one serialized vcard-temp document per account."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.models import Account, VCardDocument
from chatgate.storage.repositories.owner import Owner, require_account_id


class VCardRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def get(self, owner: Owner) -> str | None:
        """The stored document, or None when the account has none (or does not exist)."""
        username, domain = owner
        query = (
            select(VCardDocument.xml)
            .join(Account, Account.id == VCardDocument.account_id)
            .where(Account.username == username, Account.domain == domain)
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def put(self, owner: Owner, xml: str) -> None:
        """Store or replace the document.  Raises AccountNotFound."""
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            result = await conn.execute(
                update(VCardDocument).where(VCardDocument.account_id == account_id).values(xml=xml)
            )
            if result.rowcount == 0:
                await conn.execute(insert(VCardDocument).values(account_id=account_id, xml=xml))
