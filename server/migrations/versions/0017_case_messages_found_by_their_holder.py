"""case messages indexed by the worker holding them: each worker renews (or, cut off from the broker, releases)
its hold every 15 s, which read the whole backlog without it

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-09 00:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_case_messages_held_by", "case_messages", ["held_by"])


def downgrade() -> None:
    op.drop_index("ix_case_messages_held_by", table_name="case_messages")
