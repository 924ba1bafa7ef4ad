"""What a console login is shown once on its next page (the notices of a change,
a token just created), kept on its session row so that the page after a POST
shows it whichever worker or node serves that page.  Sealed with a key only the
login's cookie gives (`chatgate.http.console.pending`): the database never holds
a readable token.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("admin_console_sessions", sa.Column("pending", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("admin_console_sessions") as batch:
        batch.drop_column("pending")
