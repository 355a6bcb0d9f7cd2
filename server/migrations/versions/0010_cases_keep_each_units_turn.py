"""cases keep each unit's turn that ended before the case did (returned, reassigned, closed then reopened), so that
assessment credits each unit with its own

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.models

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_rounds",
        sa.Column("id", server.models.BIG_ID, primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("unit_id", sa.String(64), nullable=True),
        sa.Column("dispatched_at", server.models.UTCDateTime(), nullable=False),
        sa.Column("deadline_at", server.models.UTCDateTime(), nullable=True),
        sa.Column("accepted_at", server.models.UTCDateTime(), nullable=True),
        sa.Column("feedback_at", server.models.UTCDateTime(), nullable=True),
        sa.Column("ended_at", server.models.UTCDateTime(), nullable=False),
        sa.Column("ended_by", sa.String(16), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("on_time", sa.Boolean(), nullable=True),
        sa.Column("reworked", sa.Integer(), nullable=False),
        sa.Column("extended", sa.Integer(), nullable=False),
    )
    op.create_index("ix_case_rounds_case_id", "case_rounds", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_case_rounds_case_id", "case_rounds")
    op.drop_table("case_rounds")
