"""webhook subscriptions rest when their endpoint cannot be reached (a dead receiver's changes were tried one after
another, each taking the whole connect timeout, while the other subscribers waited)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(sa.Column("unanswered", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("resting_until", server.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+): batch mode rebuilds the table, and SQLite's DROP TABLE of the old copy,
    # with foreign keys on, deleted every delivery (ON DELETE CASCADE)
    op.execute("ALTER TABLE webhook_subscriptions DROP COLUMN resting_until")
    op.execute("ALTER TABLE webhook_subscriptions DROP COLUMN unanswered")
