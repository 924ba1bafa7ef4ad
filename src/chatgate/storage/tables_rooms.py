"""The tables of persistent rooms (XEP-0045),
on the same declarative base as `models.py` (which imports this module so that
the metadata knows them).

Only persistent rooms are stored: their configuration, subject and affiliations.
Occupants, roles and the join history are in memory only (`modules/muc/room.py`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chatgate.storage.declarative import Base, RowId, UTCDateTime, utcnow


class StoredRoom(Base):
    """A persistent room: its JID, its configuration (JSON, `RoomConfig.as_dict`),
    its subject and the key its XEP-0421 occupant ids are made with (so they stay
    the same across restarts)."""

    __tablename__ = "muc_rooms"
    __table_args__ = (UniqueConstraint("jid"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    #: room@service, prepared (at most 2047 bytes: a localpart and a domain)
    jid: Mapped[str] = mapped_column(String(2047))
    #: the service domain, to load one service's rooms
    service: Mapped[str] = mapped_column(String(1023), index=True)
    config: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text, default="")
    subject_nick: Mapped[str] = mapped_column(String(1023), default="")
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RoomAffiliation(Base):
    """One bare JID's affiliation with a persistent room (owner, admin, member or
    outcast; none is not stored), and the reason given when it was set."""

    __tablename__ = "muc_affiliations"

    room_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("muc_rooms.id", ondelete="CASCADE"), primary_key=True
    )
    jid: Mapped[str] = mapped_column(String(2047), primary_key=True)
    affiliation: Mapped[str] = mapped_column(String(16))
