"""Accounts an administrator locked: the account and everything it owns stay, but
no login succeeds until it is unlocked (`chatgate user lock`, the account service).

Only a column is added: no table is copied, so nothing hanging off an account is
touched (see `upgrade`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-18
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default ("0", which PostgreSQL reads as false) lets SQLite add the
    # column in place.  With an expression such as sa.false() Alembic's batch mode
    # copies the table and drops the old one, and dropping `accounts` with foreign
    # keys on cascades: every account's keys, roster, offline messages... would go.
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("locked", sa.Boolean(), nullable=False, server_default="0"))


def downgrade() -> None:
    # In place too (SQLite 3.35 and later drop a column with ALTER TABLE): batch mode
    # would copy `accounts` and cascade the old table's drop, as `upgrade` explains.
    op.drop_column("accounts", "locked")
