"""The XEP-0313 message archive: archived messages (an account's or a room's) and
each account's archiving preferences (`storage/tables_archive.py`).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chatgate.storage.models import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: 64-bit row ids, as migration 0010 made them (SQLite: its INTEGER rowid)
_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "archive_messages",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(3071), nullable=False),
        sa.Column(
            "account_id",
            _ROW_ID,
            sa.ForeignKey(
                "accounts.id",
                ondelete="CASCADE",
                name="fk_archive_messages_account_id_accounts",
            ),
            nullable=True,
        ),
        sa.Column("archive_id", sa.String(26), nullable=False),
        sa.Column("peer", sa.String(3071), nullable=False),
        sa.Column("peer_resource", sa.String(1023), nullable=False, server_default=""),
        sa.Column("stamp", UTCDateTime(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("stanza", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_archive_messages"),
        sa.UniqueConstraint("owner", "archive_id", name="uq_archive_messages_owner_archive_id"),
    )
    op.create_index("ix_archive_messages_account_id", "archive_messages", ["account_id"])
    op.create_index("ix_archive_messages_stamp", "archive_messages", ["stamp"])
    op.create_index(
        "ix_archive_messages_owner_peer", "archive_messages", ["owner", "peer", "archive_id"]
    )
    op.create_table(
        "archive_prefs",
        sa.Column(
            "account_id",
            _ROW_ID,
            sa.ForeignKey(
                "accounts.id", ondelete="CASCADE", name="fk_archive_prefs_account_id_accounts"
            ),
            nullable=False,
        ),
        sa.Column("default_mode", sa.String(8), nullable=False),
        sa.Column("always", sa.Text(), nullable=False, server_default=""),
        sa.Column("never", sa.Text(), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("account_id", name="pk_archive_prefs"),
    )


def downgrade() -> None:
    op.drop_table("archive_prefs")
    op.drop_index("ix_archive_messages_owner_peer", "archive_messages")
    op.drop_index("ix_archive_messages_stamp", "archive_messages")
    op.drop_index("ix_archive_messages_account_id", "archive_messages")
    op.drop_table("archive_messages")
