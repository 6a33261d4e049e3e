"""mutual-aid plans, stored and approved into shipments; shipment lines say whether they hold a
reservation

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import healthmesh.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mutual_aid_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("first_period", sa.Date(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("proposed", "approved", "rejected", name="planstatus", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("inputs_digest", sa.String(length=64), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", healthmesh.db.UTCDateTime(), nullable=False),
        sa.Column("decided_by", sa.Integer(), nullable=True),
        sa.Column("decided_at", healthmesh.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_mutual_aid_plans_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by"], ["users.id"], name=op.f("fk_mutual_aid_plans_decided_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_mutual_aid_plans_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mutual_aid_plans")),
    )
    with op.batch_alter_table("mutual_aid_plans", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mutual_aid_plans_inputs_digest"), ["inputs_digest"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_mutual_aid_plans_product_id"), ["product_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_mutual_aid_plans_status"), ["status"], unique=False)

    with op.batch_alter_table("shipments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mutual_aid_plan_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_shipments_mutual_aid_plan_id"), ["mutual_aid_plan_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_shipments_mutual_aid_plan_id_mutual_aid_plans"),
            "mutual_aid_plans",
            ["mutual_aid_plan_id"],
            ["id"],
        )

    with op.batch_alter_table("shipment_lines", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("from_reservation", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # until now only an allocation line held a reservation
    op.execute("UPDATE shipment_lines SET from_reservation = (allocation_line_id IS NOT NULL)")
    with op.batch_alter_table("shipment_lines", schema=None) as batch_op:
        batch_op.alter_column("from_reservation", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("shipment_lines", schema=None) as batch_op:
        batch_op.drop_column("from_reservation")
    with op.batch_alter_table("shipments", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_shipments_mutual_aid_plan_id_mutual_aid_plans"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_shipments_mutual_aid_plan_id"))
        batch_op.drop_column("mutual_aid_plan_id")
    with op.batch_alter_table("mutual_aid_plans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mutual_aid_plans_status"))
        batch_op.drop_index(batch_op.f("ix_mutual_aid_plans_product_id"))
        batch_op.drop_index(batch_op.f("ix_mutual_aid_plans_inputs_digest"))
    op.drop_table("mutual_aid_plans")
