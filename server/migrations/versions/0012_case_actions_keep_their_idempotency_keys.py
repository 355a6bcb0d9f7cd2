"""case actions sent with an Idempotency-Key keep it for a day, so that the same request sent again (a field app
retrying after its answer was lost) is answered, not taken twice

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 14:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.models

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "action_keys",
        sa.Column("id", server.models.BIG_ID, primary_key=True),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("at", server.models.UTCDateTime(), nullable=False),
        sa.UniqueConstraint("token", "key", name="uq_action_keys_token_key"),
    )
    op.create_index("ix_action_keys_at", "action_keys", ["at"])


def downgrade() -> None:
    op.drop_index("ix_action_keys_at", "action_keys")
    op.drop_table("action_keys")
