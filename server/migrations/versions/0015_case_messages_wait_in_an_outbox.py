"""case changes' MQTT messages wait in an outbox written with the change, until the broker has them: a worker
restarted while the broker was away lost them with paho's memory

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.models

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_messages",
        sa.Column("id", server.models.BIG_ID, primary_key=True),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", server.models.UTCDateTime(), nullable=False),
        sa.Column("held_by", sa.String(128), nullable=True),
        sa.Column("held_until", server.models.UTCDateTime(), nullable=True),
    )
    op.create_index("ix_case_messages_case_id", "case_messages", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_case_messages_case_id", "case_messages")
    op.drop_table("case_messages")
