"""cases indexed by camera view and place, for the lookup of the case a new violation repeats

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 20:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_view", "cases", ["node_id", "camera_id", "zone_id"])
    op.create_index("ix_cases_place", "cases", ["lat", "lon"])


def downgrade() -> None:
    op.drop_index("ix_cases_place", table_name="cases")
    op.drop_index("ix_cases_view", table_name="cases")
