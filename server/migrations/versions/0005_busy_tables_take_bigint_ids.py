"""the busy tables' ids are bigint on PostgreSQL (integer ran out after 2,147,483,647 rows)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 07:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BUSY = ("events", "evidence", "case_transitions", "dead_letters", "webhook_deliveries")
"""SQLite's INTEGER primary keys are 64-bit row ids already: nothing changes there."""


def _retype(kind: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in BUSY:
        op.alter_column(table, "id", type_=sa.BigInteger() if kind == "bigint" else sa.Integer(),
                        existing_type=sa.Integer() if kind == "bigint" else sa.BigInteger(), existing_nullable=False)
        # the id's sequence has a type of its own, and stops at its type's end
        op.execute(f"ALTER SEQUENCE {_sequence(table)} AS {kind}")


def _sequence(table: str) -> str:
    name = op.get_bind().scalar(sa.text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table})
    if name is None:
        raise RuntimeError(f"table {table} has no id sequence")
    return name


def upgrade() -> None:
    _retype("bigint")


def downgrade() -> None:
    _retype("integer")
