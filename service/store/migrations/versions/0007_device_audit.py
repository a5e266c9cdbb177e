"""The audit trail names a device caller: its device CA (enrollment group) and its certificate's
issuer, serial and SHA-256 fingerprint (never a key).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.store.migrations.columns import add_columns, drop_columns

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns added in place: no copy of what may be a large table.
    add_columns(
        "registrations",
        sa.Column("device_ca_id", sa.String(32), nullable=True),
        sa.Column("device_issuer", sa.String(1024), nullable=True),
        sa.Column("device_serial", sa.String(128), nullable=True),
        sa.Column("device_fingerprint", sa.String(64), nullable=True),
    )
    op.create_index("ix_registrations_device_at", "registrations", ["device_fingerprint", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_registrations_device_at", table_name="registrations")
    drop_columns("registrations", "device_fingerprint", "device_serial", "device_issuer", "device_ca_id")
