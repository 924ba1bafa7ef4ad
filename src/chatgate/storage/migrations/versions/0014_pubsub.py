"""PEP nodes and items (XEP-0060/0163), private XML storage (XEP-0049).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "private_xml",
        sa.Column("account_id", _ROW_ID, nullable=False),
        sa.Column("namespace", sa.String(1023), nullable=False),
        sa.Column("xml", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_private_xml_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "namespace", name="pk_private_xml"),
    )
    op.create_table(
        "pubsub_nodes",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("account_id", _ROW_ID, nullable=False),
        sa.Column("node", sa.String(1023), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name="fk_pubsub_nodes_account_id_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_pubsub_nodes"),
        sa.UniqueConstraint("account_id", "node", name="uq_pubsub_nodes_account_id_node"),
    )
    op.create_table(
        "pubsub_items",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("node_id", _ROW_ID, nullable=False),
        sa.Column("item_id", sa.String(1023), nullable=False),
        sa.Column("publisher", sa.String(3071), nullable=False),
        sa.Column("xml", sa.Text(), nullable=False),
        sa.Column("published", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["pubsub_nodes.id"],
            name="fk_pubsub_items_node_id_pubsub_nodes",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_pubsub_items"),
        sa.UniqueConstraint("node_id", "item_id", name="uq_pubsub_items_node_id_item_id"),
    )
    op.create_index("ix_pubsub_items_node_id", "pubsub_items", ["node_id"])


def downgrade() -> None:
    op.drop_index("ix_pubsub_items_node_id", table_name="pubsub_items")
    op.drop_table("pubsub_items")
    op.drop_table("pubsub_nodes")
    op.drop_table("private_xml")
