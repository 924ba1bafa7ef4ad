"""HTTP upload slots (XEP-0363): one row per slot, the quota's and the PUT's record.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: row ids: 64-bit on PostgreSQL, SQLite's INTEGER rowid (as `models.RowId`)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "upload_slots",
        sa.Column("id", _ID, autoincrement=True),
        sa.Column(
            "account_id",
            _ID,
            sa.ForeignKey(
                "accounts.id", ondelete="CASCADE", name="fk_upload_slots_account_id_accounts"
            ),
            nullable=False,
        ),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("put_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uploading", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stored", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_upload_slots"),
        sa.UniqueConstraint("token", name="uq_upload_slots_token"),
    )
    op.create_index("ix_upload_slots_account_id_created", "upload_slots", ["account_id", "created"])
    op.create_index("ix_upload_slots_expires", "upload_slots", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_upload_slots_expires", table_name="upload_slots")
    op.drop_index("ix_upload_slots_account_id_created", table_name="upload_slots")
    op.drop_table("upload_slots")
