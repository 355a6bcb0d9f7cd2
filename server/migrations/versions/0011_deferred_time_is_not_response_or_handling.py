"""the time a case spent deferred (缓办) is kept, before and after the unit accepted it, so that it counts neither as
the unit's response time nor as its handling time

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 11:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = ("response_paused_seconds", "handling_paused_seconds")


def upgrade() -> None:
    for table in ("cases", "case_rounds"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in COLUMNS:
                batch_op.add_column(sa.Column(column, sa.Double(), nullable=False, server_default="0"))


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+): batch mode rebuilds the table, which foreign keys refuse (0002)
    for table in ("cases", "case_rounds"):
        for column in COLUMNS:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
