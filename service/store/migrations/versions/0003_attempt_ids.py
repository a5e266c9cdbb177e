"""Registration records carry their attempt's id, unique: writing a settlement twice (a retry
after a commit whose outcome was lost, a journal replayed by two workers) changes nothing.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("registrations", sa.Column("attempt_id", sa.String(32), nullable=True))
    op.create_index("uq_registrations_attempt", "registrations", ["attempt_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_registrations_attempt", table_name="registrations")
    with op.batch_alter_table("registrations") as batch:
        batch.drop_column("attempt_id")
