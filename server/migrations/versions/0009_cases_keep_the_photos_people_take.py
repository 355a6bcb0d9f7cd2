"""cases keep the photos people take of them: field staff reporting back with the street as they left it, an
operator adding one (the files on disk under their SHA-256, as evidence)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.models

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_photos",
        sa.Column("id", server.models.BIG_ID, primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("caption", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", server.models.UTCDateTime(), nullable=False),
    )
    op.create_index("ix_case_photos_case_id", "case_photos", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_case_photos_case_id", "case_photos")
    op.drop_table("case_photos")
