"""64-bit row ids on PostgreSQL: every id column, its sequence, and every
reference to an account become BIGINT.

PostgreSQL's INTEGER (and the sequence behind a SERIAL id) stops at 2**31 - 1.
Some tables spend ids fast: the live registry's snapshot deletes and inserts a
session at each change, offline messages and the audit log only grow, and each
ANONYMOUS login makes an account.  SQLite's INTEGER PRIMARY KEY is its 64-bit
rowid already, so this revision changes nothing there.

On PostgreSQL each ALTER rewrites its table (quick for a new installation; for
a large one, run the upgrade at a quiet time).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: tables whose `id` is a generated row id
ID_TABLES = (
    "accounts",
    "scram_credentials",
    "roster_items",
    "subscription_requests",
    "offline_messages",
    "registration_fields",
    "pending_registrations",
    "stream_rules",
    "live_sessions",
    "admin_audit",
)

#: tables whose `account_id` references accounts.id
ACCOUNT_REFERENCES = (
    "scram_credentials",
    "roster_items",
    "subscription_requests",
    "roster_versions",
    "offline_messages",
    "vcards",
    "legacy_secrets",
    "registration_fields",
    "stream_keys",
)


def _retype(new: type[sa.types.TypeEngine], old: type[sa.types.TypeEngine], sql: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ID_TABLES:
        op.alter_column(table, "id", type_=new(), existing_type=old(), existing_nullable=False)
        sequence = (
            op.get_bind()
            .execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table})
            .scalar_one()
        )
        # the sequence's own type bounds it too (its maximum follows the type's)
        op.execute(f"ALTER SEQUENCE {sequence} AS {sql}")
    for table in ACCOUNT_REFERENCES:
        op.alter_column(
            table, "account_id", type_=new(), existing_type=old(), existing_nullable=False
        )


def upgrade() -> None:
    _retype(sa.BigInteger, sa.Integer, "bigint")


def downgrade() -> None:
    _retype(sa.Integer, sa.BigInteger, "integer")
