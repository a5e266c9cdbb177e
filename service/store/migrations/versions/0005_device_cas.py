"""Device CAs (enrollment groups): manufacturer CAs registered for a template, their rate windows,
block lists and CRLs.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.store.migrations.columns import UTC_TIME, create_window_table, of_device_ca, quota

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_cas",
        sa.Column("ca_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("template", sa.String(36), nullable=False),
        sa.Column("certificates", sa.Text, nullable=False),
        sa.Column("fingerprint_sha256", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("reprovision", sa.String(8), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("max_chain_depth", sa.Integer, nullable=False),
        *quota(),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.UniqueConstraint("template", "fingerprint_sha256", name="uq_device_ca"),
    )
    create_window_table("device_ca_rate_windows", "ca_id")
    op.create_table(
        "device_ca_blocks",
        of_device_ca("fk_device_ca_blocks_ca"),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(256), primary_key=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
    )
    op.create_table(
        "device_ca_crls",
        of_device_ca("fk_device_ca_crls_ca"),
        sa.Column("crl", sa.LargeBinary, nullable=False),
        sa.Column("issuer", sa.String(1024), nullable=False),
        sa.Column("this_update", UTC_TIME, nullable=False),
        sa.Column("next_update", UTC_TIME, nullable=True),
        sa.Column("revoked", sa.Integer, nullable=False),
        sa.Column("loaded_at", UTC_TIME, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("device_ca_crls")
    op.drop_table("device_ca_blocks")
    op.drop_table("device_ca_rate_windows")
    op.drop_table("device_cas")
