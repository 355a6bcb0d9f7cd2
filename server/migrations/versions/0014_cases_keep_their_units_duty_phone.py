"""cases keep their unit's duty phone as it was when assigned: a unit without a roster has no person on duty, and
whoever must reach it about the case had no number

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unit_phone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE cases DROP COLUMN unit_phone")  # a plain DROP COLUMN, as in 0011
