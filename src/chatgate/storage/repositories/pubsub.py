"""PEP nodes and their items (XEP-0060/0163): one repository for the aggregate
"an account's nodes".

Every write runs with the owner's account row locked (`require_account_id`), so
the limits it checks (nodes per account, items per node) hold under concurrent
publishes; the module decides what the limits are.  Configurations are opaque
JSON text here (`modules.pep.config` reads and writes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from chatgate.storage.engine import writer
from chatgate.storage.models import Account
from chatgate.storage.repositories.owner import Owner, require_account_id
from chatgate.storage.tables_pubsub import PubsubItem, PubsubNode


class NodeExists(Exception):
    """`create` named a node the account already has."""


class NodeNotFound(Exception):
    """The account has no such node."""


class TooManyNodes(Exception):
    """Creating the node would pass the account's node limit."""


@dataclass(frozen=True, slots=True)
class StoredNode:
    node: str
    config: str  # JSON


@dataclass(frozen=True, slots=True)
class StoredItem:
    item_id: str
    publisher: str
    xml: str
    published: datetime


class PubsubRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)

    # ------------------------------------------------------------ reading

    async def node(self, owner: Owner, node: str) -> StoredNode | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_node_query(owner).where(PubsubNode.node == node))).first()
        return StoredNode(row.node, row.config) if row is not None else None

    async def nodes(self, owner: Owner) -> list[StoredNode]:
        """Every node of the account, by name."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_node_query(owner).order_by(PubsubNode.node))).all()
        return [StoredNode(r.node, r.config) for r in rows]

    async def nodes_named(
        self, owners: Sequence[Owner], names: Sequence[str]
    ) -> list[tuple[Owner, StoredNode]]:
        """The nodes called one of `names` of each of `owners`, in one query (what
        a session's last items at login need: its wanted nodes of all its contacts)."""
        if not owners or not names:
            return []
        found: list[tuple[Owner, StoredNode]] = []
        wanted = set(owners)
        # One IN list per batch keeps the statement's parameters bounded.
        for start in range(0, len(owners), 500):
            batch = owners[start : start + 500]
            query = (
                select(Account.username, Account.domain, PubsubNode.node, PubsubNode.config)
                .join(Account, Account.id == PubsubNode.account_id)
                .where(
                    Account.username.in_({u for u, _ in batch}),
                    PubsubNode.node.in_(list(names)),
                )
                .order_by(Account.username, Account.domain, PubsubNode.node)
            )
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            for row in rows:
                owner = (row.username, row.domain)
                if owner in wanted and owner in batch:
                    found.append((owner, StoredNode(row.node, row.config)))
        return found

    async def items(
        self,
        owner: Owner,
        node: str,
        *,
        last: int | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[StoredItem]:
        """The node's items, oldest first: the `last` newest ones, or those named in
        `ids`, or all.  Raises NodeNotFound."""
        async with self._engine.connect() as conn:
            node_id = await _node_id(conn, owner, node)
            if node_id is None:
                raise NodeNotFound(node)
            query = select(
                PubsubItem.item_id, PubsubItem.publisher, PubsubItem.xml, PubsubItem.published
            ).where(PubsubItem.node_id == node_id)
            if ids is not None:
                query = query.where(PubsubItem.item_id.in_(list(ids)))
            query = query.order_by(PubsubItem.id.desc())
            if last is not None:
                query = query.limit(last)
            rows = (await conn.execute(query)).all()
        return [
            StoredItem(r.item_id, r.publisher, r.xml, _aware(r.published)) for r in reversed(rows)
        ]

    # ------------------------------------------------------------ nodes

    async def create(self, owner: Owner, node: str, config: str, *, max_nodes: int) -> None:
        """Raises NodeExists, TooManyNodes, AccountNotFound."""
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            if await _node_id(conn, owner, node) is not None:
                raise NodeExists(node)
            await _insert_node(conn, account_id, node, config, max_nodes)

    async def configure(self, owner: Owner, node: str, config: str, max_items: int) -> None:
        """Replace the node's configuration and drop the items past `max_items`.
        Raises NodeNotFound."""
        async with self._writer.begin() as conn:
            await require_account_id(conn, owner)
            node_id = await _node_id(conn, owner, node)
            if node_id is None:
                raise NodeNotFound(node)
            await conn.execute(
                update(PubsubNode).where(PubsubNode.id == node_id).values(config=config)
            )
            await _trim(conn, node_id, max_items)

    async def delete(self, owner: Owner, node: str) -> None:
        """Delete the node and its items.  Raises NodeNotFound."""
        async with self._writer.begin() as conn:
            await require_account_id(conn, owner)
            node_id = await _node_id(conn, owner, node)
            if node_id is None:
                raise NodeNotFound(node)
            await conn.execute(delete(PubsubItem).where(PubsubItem.node_id == node_id))
            await conn.execute(delete(PubsubNode).where(PubsubNode.id == node_id))

    async def purge(self, owner: Owner, node: str) -> None:
        """Delete every item of the node.  Raises NodeNotFound."""
        async with self._writer.begin() as conn:
            await require_account_id(conn, owner)
            node_id = await _node_id(conn, owner, node)
            if node_id is None:
                raise NodeNotFound(node)
            await conn.execute(delete(PubsubItem).where(PubsubItem.node_id == node_id))

    # ------------------------------------------------------------ items

    async def publish(
        self,
        owner: Owner,
        node: str,
        item: StoredItem,
        *,
        create_config: str,
        expected_config: str | None,
        max_items: int,
        max_nodes: int,
        store: bool = True,
    ) -> StoredNode:
        """Store `item` as the node's newest (replacing an item of the same id) and
        keep only the `max_items` newest; a missing node is created first with
        `create_config` (XEP-0163 §3: auto-create).  When `expected_config` is given
        and the node existed with another configuration, raises ConfigChanged (the
        caller checked publish-options against a configuration changed meanwhile).
        `store=False` (a node that persists no items) only makes sure the node exists.
        Returns the node as it is now.  Raises TooManyNodes, AccountNotFound."""
        async with self._writer.begin() as conn:
            account_id = await require_account_id(conn, owner)
            row = (
                await conn.execute(
                    select(PubsubNode.id, PubsubNode.config).where(
                        PubsubNode.account_id == account_id, PubsubNode.node == node
                    )
                )
            ).first()
            if row is None:
                node_id = await _insert_node(conn, account_id, node, create_config, max_nodes)
                config = create_config
            else:
                node_id, config = row.id, row.config
                if expected_config is not None and expected_config != config:
                    raise ConfigChanged(node)
            if store:
                await conn.execute(
                    delete(PubsubItem).where(
                        PubsubItem.node_id == node_id, PubsubItem.item_id == item.item_id
                    )
                )
                await conn.execute(
                    insert(PubsubItem).values(
                        node_id=node_id,
                        item_id=item.item_id,
                        publisher=item.publisher,
                        xml=item.xml,
                        published=item.published,
                    )
                )
                await _trim(conn, node_id, max_items)
        return StoredNode(node, config)

    async def retract(self, owner: Owner, node: str, item_id: str) -> bool:
        """Delete one item; False when the node has no such item.  Raises NodeNotFound."""
        async with self._writer.begin() as conn:
            await require_account_id(conn, owner)
            node_id = await _node_id(conn, owner, node)
            if node_id is None:
                raise NodeNotFound(node)
            result = await conn.execute(
                delete(PubsubItem).where(
                    PubsubItem.node_id == node_id, PubsubItem.item_id == item_id
                )
            )
            return bool(result.rowcount)


class ConfigChanged(Exception):
    """The node's configuration is not the one the publish was checked against."""


def _node_query(owner: Owner) -> Select[str, str]:
    username, domain = owner
    return (
        select(PubsubNode.node, PubsubNode.config)
        .join(Account, Account.id == PubsubNode.account_id)
        .where(Account.username == username, Account.domain == domain)
    )


async def _node_id(conn: AsyncConnection, owner: Owner, node: str) -> int | None:
    username, domain = owner
    query = (
        select(PubsubNode.id)
        .join(Account, Account.id == PubsubNode.account_id)
        .where(Account.username == username, Account.domain == domain, PubsubNode.node == node)
    )
    return (await conn.execute(query)).scalar_one_or_none()


async def _insert_node(
    conn: AsyncConnection, account_id: int, node: str, config: str, max_nodes: int
) -> int:
    count = (
        await conn.execute(
            select(func.count()).select_from(PubsubNode).where(PubsubNode.account_id == account_id)
        )
    ).scalar_one()
    if count >= max_nodes:
        raise TooManyNodes(f"at most {max_nodes} nodes per account")
    result = await conn.execute(
        insert(PubsubNode).values(account_id=account_id, node=node, config=config)
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


async def _trim(conn: AsyncConnection, node_id: int, max_items: int) -> None:
    """Delete all but the `max_items` newest items of the node."""
    keep = (
        select(PubsubItem.id)
        .where(PubsubItem.node_id == node_id)
        .order_by(PubsubItem.id.desc())
        .limit(max_items)
        .scalar_subquery()
    )
    await conn.execute(
        delete(PubsubItem).where(PubsubItem.node_id == node_id, PubsubItem.id.not_in(keep))
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
