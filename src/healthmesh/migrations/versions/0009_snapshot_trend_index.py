"""snapshots by product and day cover the facility and units on hand (the member page's trend
reads them without visiting the table)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stock_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_stock_snapshots_product_day")
        batch_op.create_index(
            "ix_stock_snapshots_product_day",
            ["product_id", "day"],
            unique=False,
            postgresql_include=["facility_id", "on_hand"],
        )


def downgrade() -> None:
    with op.batch_alter_table("stock_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_stock_snapshots_product_day")
        batch_op.create_index("ix_stock_snapshots_product_day", ["product_id", "day"], unique=False)
