"""The pace of calls to AWS IoT shared by every worker and host (PROVISIONER_AWS_MAX_RATE).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aws_pace",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("next_at", sa.Float(precision=53), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("aws_pace")
