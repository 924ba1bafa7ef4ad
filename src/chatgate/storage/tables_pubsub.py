"""The tables of PEP nodes and items (XEP-0060/0163) and private XML (XEP-0049),
on the same declarative base as `models.py` (which imports this module so that
the metadata knows them).

Every row belongs to an account and goes with it (ON DELETE CASCADE).  Sizes are
bounded by the modules before anything is written (`modules/private_storage.py`,
`modules/pep/`), so the columns are plain Text."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chatgate.storage.declarative import Base, RowId, UTCDateTime, _account_fk, utcnow


class PrivateXml(Base):
    """One XEP-0049 fragment: the account's element in `namespace`, serialized."""

    __tablename__ = "private_xml"

    account_id: Mapped[int] = mapped_column(RowId, _account_fk(), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(1023), primary_key=True)
    xml: Mapped[str] = mapped_column(Text)
    #: UTF-8 bytes of `xml`, so the per-account quota is one SUM
    size: Mapped[int] = mapped_column(Integer)


class PubsubNode(Base):
    """A PEP node of an account (XEP-0163): its name and its configuration (JSON)."""

    __tablename__ = "pubsub_nodes"
    __table_args__ = (UniqueConstraint("account_id", "node"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(RowId, _account_fk())
    node: Mapped[str] = mapped_column(String(1023))
    #: `modules.pep.config.NodeConfig` as JSON
    config: Mapped[str] = mapped_column(Text)


class PubsubItem(Base):
    """A published item; the newest of a node has the highest `id` (a republished
    item id gets a new row, so it becomes the last published item)."""

    __tablename__ = "pubsub_items"
    __table_args__ = (UniqueConstraint("node_id", "item_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    node_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("pubsub_nodes.id", ondelete="CASCADE"), index=True
    )
    item_id: Mapped[str] = mapped_column(String(1023))
    #: the publisher's full JID (XEP-0060 §7.1.2 may show it)
    publisher: Mapped[str] = mapped_column(String(3071))
    #: the item's payload element, serialized standalone ("" for a notification-only item)
    xml: Mapped[str] = mapped_column(Text)
    published: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
