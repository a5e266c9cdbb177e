"""The audit trail names a device caller: its device CA (enrollment group) and its certificate's
issuer, serial and SHA-256 fingerprint (never a key).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns added in place: no copy of what may be a large table.
    op.add_column("registrations", sa.Column("device_ca_id", sa.String(32), nullable=True))
    op.add_column("registrations", sa.Column("device_issuer", sa.String(1024), nullable=True))
    op.add_column("registrations", sa.Column("device_serial", sa.String(128), nullable=True))
    op.add_column("registrations", sa.Column("device_fingerprint", sa.String(64), nullable=True))
    op.create_index("ix_registrations_device_at", "registrations", ["device_fingerprint", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_registrations_device_at", table_name="registrations")
    with op.batch_alter_table("registrations") as table:
        table.drop_column("device_fingerprint")
        table.drop_column("device_serial")
        table.drop_column("device_issuer")
        table.drop_column("device_ca_id")
