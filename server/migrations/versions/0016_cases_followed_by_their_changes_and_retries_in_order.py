"""integrators follow cases by (updated_at, id) (`GET /api/v1/cases?after=`), and an admin's retry of a webhook
delivery remembers whether it may go after a later change of its case

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08 00:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_updated", "cases", ["updated_at", "id"])
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("out_of_order", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.execute("ALTER TABLE webhook_deliveries DROP COLUMN out_of_order")  # a plain DROP COLUMN, as in 0011
    op.drop_index("ix_cases_updated", table_name="cases")
