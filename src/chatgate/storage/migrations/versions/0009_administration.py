"""Administration: the administrators chatgate keeps (`basic` and `digest` HTTP
authentication), bearer tokens for automation, the console's login sessions
and the audit log of who changed what.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admin_users",
        sa.Column("name", sa.String(255), primary_key=True),
        # Argon2id or bcrypt (PHC / modular crypt string)
        sa.Column("password_hash", sa.String(255), nullable=False),
        # H(name:realm:password) for RFC 7616 digest, per algorithm; the realm they were made for
        sa.Column("digest_realm", sa.String(255), nullable=True),
        sa.Column("digest_md5", sa.String(32), nullable=True),
        sa.Column("digest_sha256", sa.String(64), nullable=True),
        # comma-separated: admin, advUser, readOnly
        sa.Column("groups", sa.String(255), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("label", sa.String(255), nullable=False),
        # SHA-256 of the token's secret part, hex
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("groups", sa.String(255), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("last_used_at", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "admin_console_sessions",
        # SHA-256 of the cookie's value, hex
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("admin", sa.String(255), nullable=False),
        sa.Column("groups", sa.String(255), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at", sa.BigInteger(), nullable=False),
    )
    op.create_index(
        "ix_admin_console_sessions_last_seen_at", "admin_console_sessions", ["last_seen_at"]
    )
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger(), nullable=False),
        # who: the administrator's name, "token:<id>", or "cli:<os user>"
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(1024), nullable=True),
        # JSON object, secrets never included
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_admin_audit_at", "admin_audit", ["at"])


def downgrade() -> None:
    op.drop_index("ix_admin_audit_at", "admin_audit")
    op.drop_table("admin_audit")
    op.drop_index("ix_admin_console_sessions_last_seen_at", "admin_console_sessions")
    op.drop_table("admin_console_sessions")
    op.drop_table("admin_tokens")
    op.drop_table("admin_users")
