"""XEP-0045 persistent rooms: their configuration, subject and affiliations
(`storage/tables_rooms.py`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chatgate.storage.models import UTCDateTime

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: 64-bit row ids, as migration 0010 made them (SQLite: its INTEGER rowid)
_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "muc_rooms",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("jid", sa.String(2047), nullable=False),
        sa.Column("service", sa.String(1023), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("subject_nick", sa.String(1023), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_muc_rooms")),
        sa.UniqueConstraint("jid", name=op.f("uq_muc_rooms_jid")),
    )
    op.create_index(op.f("ix_muc_rooms_service"), "muc_rooms", ["service"])
    op.create_table(
        "muc_affiliations",
        sa.Column("room_id", _ROW_ID, nullable=False),
        sa.Column("jid", sa.String(2047), nullable=False),
        sa.Column("affiliation", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["muc_rooms.id"],
            name=op.f("fk_muc_affiliations_room_id_muc_rooms"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("room_id", "jid", name=op.f("pk_muc_affiliations")),
    )


def downgrade() -> None:
    op.drop_table("muc_affiliations")
    op.drop_index(op.f("ix_muc_rooms_service"), table_name="muc_rooms")
    op.drop_table("muc_rooms")
