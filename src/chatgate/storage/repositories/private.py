"""Private XML storage (XEP-0049): one serialized fragment per (account, namespace).

Quotas are checked inside the write transaction, with the account row locked
(`require_account_id`), so two concurrent sets cannot both squeeze under them.
"""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.models import Account
from chatgate.storage.repositories.owner import Owner, require_account_id
from chatgate.storage.tables_pubsub import PrivateXml


class PrivateQuotaExceeded(Exception):
    """Storing the fragment would pass the account's count or byte quota."""


class PrivateXmlRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    async def get(self, owner: Owner, namespace: str) -> str | None:
        """The stored fragment in `namespace`, or None."""
        username, domain = owner
        query = (
            select(PrivateXml.xml)
            .join(Account, Account.id == PrivateXml.account_id)
            .where(
                Account.username == username,
                Account.domain == domain,
                PrivateXml.namespace == namespace,
            )
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def put(
        self, owner: Owner, namespace: str, xml: str, *, max_fragments: int, max_bytes: int
    ) -> None:
        """Store or replace the fragment of `namespace`.

        Raises PrivateQuotaExceeded when the account would then hold more than
        `max_fragments` namespaces or `max_bytes` UTF-8 bytes in all, and
        AccountNotFound."""
        size = len(xml.encode())
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            mine = PrivateXml.account_id == account_id
            others = (mine, PrivateXml.namespace != namespace)
            count, total = (
                await conn.execute(
                    select(func.count(), func.coalesce(func.sum(PrivateXml.size), 0)).where(*others)
                )
            ).one()
            if count + 1 > max_fragments:
                raise PrivateQuotaExceeded(f"more than {max_fragments} namespaces stored")
            if total + size > max_bytes:
                raise PrivateQuotaExceeded(f"more than {max_bytes} bytes stored")
            await conn.execute(delete(PrivateXml).where(mine, PrivateXml.namespace == namespace))
            await conn.execute(
                insert(PrivateXml).values(
                    account_id=account_id, namespace=namespace, xml=xml, size=size
                )
            )

    async def remove(self, owner: Owner, namespace: str) -> None:
        """Forget the fragment of `namespace` (nothing when there is none).  Raises
        AccountNotFound."""
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            await conn.execute(
                delete(PrivateXml).where(
                    PrivateXml.account_id == account_id, PrivateXml.namespace == namespace
                )
            )
