"""Blocklists (XEP-0191) and push registrations (XEP-0357).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: row ids: 64-bit on PostgreSQL, SQLite's INTEGER rowid (as `models.RowId`)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _account_id(table: str) -> sa.Column[int]:
    return sa.Column(
        "account_id",
        _ID,
        sa.ForeignKey("accounts.id", ondelete="CASCADE", name=f"fk_{table}_account_id_accounts"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "blocklist_items",
        sa.Column("id", _ID, autoincrement=True),
        _account_id("blocklist_items"),
        sa.Column("jid", sa.String(3071), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_blocklist_items"),
        sa.UniqueConstraint("account_id", "jid", name="uq_blocklist_items_account_id_jid"),
    )
    op.create_table(
        "push_registrations",
        sa.Column("id", _ID, autoincrement=True),
        _account_id("push_registrations"),
        sa.Column("service", sa.String(3071), nullable=False),
        sa.Column("node", sa.String(1023), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_push_registrations"),
        sa.UniqueConstraint(
            "account_id", "service", "node", name="uq_push_registrations_account_id_service_node"
        ),
    )


def downgrade() -> None:
    op.drop_table("push_registrations")
    op.drop_table("blocklist_items")
