"""Device CAs (enrollment groups): manufacturer CAs registered for a template, their rate windows,
block lists and CRLs.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


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
        sa.Column("max_provisions", sa.Integer, nullable=True),
        sa.Column("rate_per_minute", sa.Integer, nullable=True),
        sa.Column("provisions", sa.Integer, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.UniqueConstraint("template", "fingerprint_sha256", name="uq_device_ca"),
    )
    op.create_table(
        "device_ca_rate_windows",
        sa.Column("ca_id", sa.String(32), primary_key=True),
        sa.Column("window", sa.BigInteger, primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
    )
    op.create_table(
        "device_ca_blocks",
        sa.Column(
            "ca_id",
            sa.String(32),
            sa.ForeignKey("device_cas.ca_id", ondelete="CASCADE", name="fk_device_ca_blocks_ca"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(256), primary_key=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
    )
    op.create_table(
        "device_ca_crls",
        sa.Column(
            "ca_id",
            sa.String(32),
            sa.ForeignKey("device_cas.ca_id", ondelete="CASCADE", name="fk_device_ca_crls_ca"),
            primary_key=True,
        ),
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
