"""In-band registration and legacy authentication: legacy secrets, registration
fields, pending registrations, invitation tokens.

Revision ID: 0002
Revises: 0001
Create Date: 2024-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chatgate.storage.models import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
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
        "legacy_secrets",
        _account_id(primary_key=True),
        sa.Column("digest_password", sa.Text(), nullable=True),
        sa.Column("digest_md5_realm", sa.String(1023), nullable=True),
        sa.Column("digest_md5_ha1", sa.LargeBinary(), nullable=True),
        sa.Column("zk_token", sa.String(64), nullable=True),
        sa.Column("zk_sequence", sa.Integer(), nullable=True),
        sa.Column("zk_hash", sa.String(40), nullable=True),
        sa.Column("scram_binding", sa.String(64), nullable=False),
    )
    op.create_table(
        "registration_fields",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _account_id(),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.UniqueConstraint("account_id", "name"),
    )
    op.create_table(
        "pending_registrations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(1023), nullable=False),
        sa.Column("domain", sa.String(1023), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("address", sa.String(255), nullable=True),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("username", "domain"),
    )
    op.create_table(
        "registration_invites",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("domain", sa.String(1023), nullable=False),
        sa.Column("username", sa.String(1023), nullable=True),
        sa.Column("uses_left", sa.Integer(), nullable=False),
        sa.Column("expires", UTCDateTime(), nullable=True),
        sa.Column("created", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "registration_invites",
        "pending_registrations",
        "registration_fields",
        "legacy_secrets",
    ):
        op.drop_table(table)
