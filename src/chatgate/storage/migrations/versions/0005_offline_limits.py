"""Offline quotas by bytes and per sender: each stored message records its
sender's bare JID and the UTF-8 size of its stored form.

Messages stored before this revision get their size computed here, and the
sender "" (unknown): they count toward the recipient's quota, and toward no
real sender's share.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("offline_messages") as batch:
        batch.add_column(sa.Column("sender", sa.String(3071), nullable=False, server_default=""))
        batch.add_column(sa.Column("size", sa.Integer(), nullable=False, server_default="0"))
    # Bytes, not characters: SQLite's length() of a BLOB counts bytes.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("UPDATE offline_messages SET size = length(CAST(stanza AS BLOB))")
    else:
        op.execute("UPDATE offline_messages SET size = octet_length(stanza)")


def downgrade() -> None:
    with op.batch_alter_table("offline_messages") as batch:
        batch.drop_column("size")
        batch.drop_column("sender")
