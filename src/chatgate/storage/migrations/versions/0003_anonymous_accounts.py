"""Mark the accounts that ANONYMOUS logins create, so that only those are ever
deleted in bulk (an anonymous host's leftovers after a crash).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In place, with a constant default ("0", false to PostgreSQL too).  The first
    # version said `server_default=sa.false()`, an expression, which made Alembic's
    # batch mode copy `accounts` and drop the old table on SQLite; with foreign keys
    # on, the drop cascaded and deleted every account's credentials, roster, offline
    # messages and vCard (tests/unit/storage/test_migrations.py keeps it from
    # coming back).  Databases already past 0003 have the same column either way.
    op.add_column(
        "accounts", sa.Column("anonymous", sa.Boolean(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    # In place as well (SQLite 3.35 and later drop a column with ALTER TABLE).
    op.drop_column("accounts", "anonymous")
