"""cases keep every citizen report (one that joined a case kept only 300 characters of its words, and no contact)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 08:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("reports", sa.JSON(), nullable=True))
    # the first report of each citizen's case, from the columns that held it
    cases = sa.table("cases", sa.column("id", sa.Integer()), sa.column("source", sa.String()),
                     sa.column("description", sa.Text()), sa.column("address", sa.Text()),
                     sa.column("reporter", sa.JSON()), sa.column("opened_at", sa.String()),
                     sa.column("reports", sa.JSON()))
    connection = op.get_bind()
    for case_id, description, address, reporter, opened_at in connection.execute(
            sa.select(cases.c.id, cases.c.description, cases.c.address, cases.c.reporter, cases.c.opened_at)
            .where(cases.c.source == "open311")):
        moment = opened_at if isinstance(opened_at, datetime) else datetime.fromisoformat(str(opened_at))
        first = {"at": moment.replace(tzinfo=moment.tzinfo or UTC).isoformat(), "via": "open311",
                 "description": description or "", "address": address, "reporter": reporter}
        connection.execute(cases.update().where(cases.c.id == case_id).values(reports=[first]))


def downgrade() -> None:
    # a plain DROP COLUMN (SQLite 3.35+): batch mode rebuilds the table, and SQLite's DROP TABLE of the old copy,
    # with foreign keys on, refused (the cases have steps and events)
    op.execute("ALTER TABLE cases DROP COLUMN reports")
