"""The tables of the message archive (XEP-0313),
on the same declarative base as `models.py` (which imports this module so that
the metadata knows them).

One table holds every archive, an account's or a room's: `owner` is the
archive's bare JID (what queries select by) and `account_id` ties an account's
rows to its account, so deleting the account deletes its archive (ON DELETE
CASCADE).  A room's rows have no account; the rooms module removes them when a
room is destroyed (`ArchiveRepository.delete_owner`).

`archive_id` is the XEP-0359 stanza id, 26 characters of Crockford base32 that
begin with the millisecond timestamp (`modules/mam/ids.py`): ordering by it is
ordering by time, so one index, (owner, archive_id), serves paging in both
directions and the start/end filters (turned into id bounds).  The 'with'
filter has its own index, (owner, peer, archive_id).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chatgate.storage.declarative import Base, RowId, UTCDateTime


class ArchivedMessage(Base):
    """One message in one archive (an account's or a room's)."""

    __tablename__ = "archive_messages"
    __table_args__ = (
        UniqueConstraint("owner", "archive_id"),
        Index("ix_archive_messages_owner_peer", "owner", "peer", "archive_id"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    #: the archive's bare JID (an account's or a room's)
    owner: Mapped[str] = mapped_column(String(3071))
    #: the account owning the archive (None for a room's): deleting it deletes its rows
    account_id: Mapped[int | None] = mapped_column(
        RowId, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True, index=True
    )
    #: the XEP-0359 stanza id, time-ordered (see the module docstring)
    archive_id: Mapped[str] = mapped_column(String(26))
    #: bare JID of the other party ('with', XEP-0313 §4.1.1); a room's archive: the room
    peer: Mapped[str] = mapped_column(String(3071))
    #: resource of the other party ("" when none); a room's archive: the nick
    peer_resource: Mapped[str] = mapped_column(String(1023), server_default="")
    stamp: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    #: UTF-8 bytes of `stanza`
    size: Mapped[int] = mapped_column(Integer, server_default="0")
    #: the message as archived, serialized
    stanza: Mapped[str] = mapped_column(Text)


class ArchivePreferences(Base):
    """An account's XEP-0313 §7 preferences; an account without a row has the defaults."""

    __tablename__ = "archive_prefs"

    account_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    #: 'always', 'never' or 'roster'
    default_mode: Mapped[str] = mapped_column(String(8))
    #: bare JIDs always archived, one per line
    always: Mapped[str] = mapped_column(Text, server_default="")
    #: bare JIDs never archived, one per line
    never: Mapped[str] = mapped_column(Text, server_default="")
