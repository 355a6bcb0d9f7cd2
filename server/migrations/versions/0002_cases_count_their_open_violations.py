"""cases count their open violations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 17:58:36.832932
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_violations", sa.Integer(), nullable=False, server_default="0"))
    # cases already there: the violations whose `end` has not come
    op.execute(
        "UPDATE cases SET open_violations = (SELECT COUNT(DISTINCT e.violation_id) FROM events e "
        "WHERE e.case_id = cases.id AND e.violation_id NOT IN "
        "(SELECT d.violation_id FROM events d WHERE d.case_id = cases.id AND d.type = 'end'))"
    )


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+): batch mode rebuilds the table, and SQLite's DROP TABLE of the old copy,
    # with foreign keys on, refused (the cases have steps and events)
    op.execute("ALTER TABLE cases DROP COLUMN open_violations")
