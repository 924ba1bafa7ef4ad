"""The tables of blocklists (XEP-0191) and push registrations (XEP-0357),
on the same declarative base as `models.py` (which imports this module so that
the metadata knows them).

Both are per-account data: rows reference `accounts.id` ON DELETE CASCADE, so an
account's removal takes its blocklist and its push registrations with it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chatgate.storage.declarative import Base, RowId, UTCDateTime, utcnow


class BlockedJid(Base):
    """One JID an account blocks (XEP-0191 §3.3): a full JID, a bare JID, a domain or
    domain/resource, matched as XEP-0016 §2.1 says."""

    __tablename__ = "blocklist_items"
    __table_args__ = (UniqueConstraint("account_id", "jid"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(RowId, ForeignKey("accounts.id", ondelete="CASCADE"))
    #: the prepared JID as text (`str(JID.parse(...))`)
    jid: Mapped[str] = mapped_column(String(3071))


class PushRegistration(Base):
    """One XEP-0357 registration of an account: the app server (`service`, a JID) and
    its `node`, with the publish-options the client gave (XEP-0357 §5)."""

    __tablename__ = "push_registrations"
    __table_args__ = (UniqueConstraint("account_id", "service", "node"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(RowId, ForeignKey("accounts.id", ondelete="CASCADE"))
    service: Mapped[str] = mapped_column(String(3071))
    node: Mapped[str] = mapped_column(String(1023))
    #: the publish-options form's fields as a JSON object of lists of strings
    options: Mapped[str] = mapped_column(Text, default="{}")
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
