"""cases remember when their unit returned them (回退), so that a unit that gave a case back in time is not charged
with the time the command centre took to send it on

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.models

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("returned_at", server.models.UTCDateTime(), nullable=True))
    op.execute("UPDATE cases SET returned_at = (SELECT max(at) FROM case_transitions WHERE case_id = cases.id "
               "AND action = 'return') WHERE status = 'returned'")


def downgrade() -> None:
    op.execute("ALTER TABLE cases DROP COLUMN returned_at")  # a plain DROP COLUMN, as in 0011
