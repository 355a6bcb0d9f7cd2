"""cases remember when they were verified (the repeat window of a case verified but not yet closed ran from its
last change, which every later event moved)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.models

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("verified_at", server.models.UTCDateTime(), nullable=True))
    # a case verified now: the time of its last verification step
    op.execute("UPDATE cases SET verified_at = (SELECT max(t.at) FROM case_transitions t WHERE t.case_id = cases.id "
               "AND t.action = 'verify') WHERE status IN ('verified', 'closed')")


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("verified_at")
