"""Stream tokens revoked before they expire (`chatgate streams tokens revoke`):
their ids, kept until the token would have expired anyway.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_token_revocations",
        sa.Column("token_id", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )
    op.create_index(
        "ix_stream_token_revocations_expires_at", "stream_token_revocations", ["expires_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_stream_token_revocations_expires_at", "stream_token_revocations")
    op.drop_table("stream_token_revocations")
