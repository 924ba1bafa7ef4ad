"""The tables of HTTP uploads (XEP-0363),
on the same declarative base as `models.py` (which imports this module so that
the metadata knows them).

One row per slot an account was given: what it may upload (name, size, type),
until when its PUT is accepted, when the PUT began (a second one is refused),
and when the file expires.  The file itself is on disk (`data_dir/uploads`),
named by the slot's random token.  Rows reference `accounts.id` ON DELETE
CASCADE: a deleted account's slots go with it, and the periodic purge removes
the files no row names any more.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from chatgate.storage.declarative import Base, RowId, UTCDateTime, utcnow


class UploadSlot(Base):
    """A slot (XEP-0363 §4): the quota counts every slot not yet expired, used or not."""

    __tablename__ = "upload_slots"
    __table_args__ = (
        Index("ix_upload_slots_account_id_created", "account_id", "created"),
        Index("ix_upload_slots_expires", "expires"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(RowId, ForeignKey("accounts.id", ondelete="CASCADE"))
    #: the random, URL-safe name of the slot (its URLs' path and its file's name)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: the PUT must begin before this
    put_before: Mapped[datetime] = mapped_column(UTCDateTime())
    #: when the PUT began (None: not yet); set once, so a second PUT is refused
    uploading: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: when the PUT's last byte was stored (None: not complete)
    stored: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: when the file (or the unused slot) is purged
    expires: Mapped[datetime] = mapped_column(UTCDateTime())
