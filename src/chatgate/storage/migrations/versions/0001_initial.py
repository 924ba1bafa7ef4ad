"""Initial schema: accounts, SCRAM credentials, roster, pending requests, offline, vCards.

Revision ID: 0001
Revises:
Create Date: 2024-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chatgate.storage.models import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _account_id(primary_key: bool = False) -> sa.Column:
    return sa.Column(
        "account_id",
        sa.Integer(),
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(1023), nullable=False),
        sa.Column("domain", sa.String(1023), nullable=False),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("username", "domain"),
    )
    op.create_table(
        "scram_credentials",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _account_id(),
        sa.Column("hash_name", sa.String(16), nullable=False),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("stored_key", sa.LargeBinary(), nullable=False),
        sa.Column("server_key", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("account_id", "hash_name"),
    )
    op.create_table(
        "roster_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _account_id(),
        sa.Column("contact_jid", sa.String(3071), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("subscription", sa.String(8), nullable=False),
        sa.Column("ask", sa.Boolean(), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False),
        sa.UniqueConstraint("account_id", "contact_jid"),
    )
    op.create_table(
        "subscription_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _account_id(),
        sa.Column("contact_jid", sa.String(3071), nullable=False),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("account_id", "contact_jid"),
    )
    op.create_table(
        "roster_versions",
        _account_id(primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_table(
        "offline_messages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _account_id(),
        sa.Column("stanza", sa.Text(), nullable=False),
        sa.Column("stamp", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_offline_messages_account_id", "offline_messages", ["account_id"])
    op.create_table(
        "vcards",
        _account_id(primary_key=True),
        sa.Column("xml", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_index("ix_offline_messages_account_id", table_name="offline_messages")
    for table in (
        "vcards",
        "offline_messages",
        "roster_versions",
        "subscription_requests",
        "roster_items",
        "scram_credentials",
        "accounts",
    ):
        op.drop_table(table)
