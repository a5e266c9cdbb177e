"""Registration records carry their attempt's id, unique: writing a settlement twice (a retry
after a commit whose outcome was lost, a journal replayed by two workers) changes nothing.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.store.migrations.columns import add_columns, drop_columns

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_columns("registrations", sa.Column("attempt_id", sa.String(32), nullable=True))
    op.create_index("uq_registrations_attempt", "registrations", ["attempt_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_registrations_attempt", table_name="registrations")
    drop_columns("registrations", "attempt_id")
