"""cases remember when they were verified (the repeat window of a case verified but not yet closed ran from its
last change, which every later event moved); case steps indexed by their case (a case's timeline, and its last step
for Open311, read every step of every case on PostgreSQL)

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
    op.create_index("ix_case_transitions_case_id", "case_transitions", ["case_id"])
    # a case verified now: the time of its last verification step, in one pass over the steps (UPDATE … FROM:
    # PostgreSQL, and SQLite from 3.33)
    op.execute("UPDATE cases SET verified_at = v.at FROM (SELECT case_id, max(at) AS at FROM case_transitions "
               "WHERE action = 'verify' GROUP BY case_id) AS v "
               "WHERE v.case_id = cases.id AND cases.status IN ('verified', 'closed')")


def downgrade() -> None:
    op.drop_index("ix_case_transitions_case_id", "case_transitions")
    # a plain DROP COLUMN (SQLite 3.35+): batch mode rebuilds the table, and SQLite's DROP TABLE of the old copy,
    # with foreign keys on, refused (the cases have steps and events)
    op.execute("ALTER TABLE cases DROP COLUMN verified_at")
