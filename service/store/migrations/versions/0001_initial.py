"""The first store: API keys, rate windows, enrollments, registrations, idempotency records.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.store.migrations.columns import (
    UTC_TIME,
    audit_id,
    create_window_table,
    quota,
    thing_and_certificate,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("scope", sa.JSON, nullable=False),
        *quota(),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=True),
        sa.Column("revoked_at", UTC_TIME, nullable=True),
        sa.Column("last_used_at", UTC_TIME, nullable=True),
    )
    create_window_table("rate_windows", "key_id")
    op.create_table(
        "enrollments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("template", sa.String(36), nullable=False),
        sa.Column("parameter", sa.String(128), nullable=False),
        sa.Column("value", sa.String(2048), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("reprovision", sa.String(8), nullable=False),
        sa.Column("provisions", sa.Integer, nullable=False),
        sa.Column("last_thing_name", sa.String(128), nullable=True),
        sa.Column("last_certificate_id", sa.String(64), nullable=True),
        sa.Column("last_provisioned_at", UTC_TIME, nullable=True),
        sa.Column("claim", sa.String(64), nullable=True),
        sa.Column("claim_expires_at", UTC_TIME, nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.UniqueConstraint("template", "parameter", "value", name="uq_enrollment"),
    )
    op.create_table(
        "registrations",
        audit_id(),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("caller_address", sa.String(64), nullable=True),
        sa.Column("template", sa.String(64), nullable=True),
        sa.Column("parameters", sa.JSON, nullable=True),
        sa.Column("flow", sa.String(16), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("http_status", sa.Integer, nullable=False),
        sa.Column("step", sa.String(16), nullable=True),
        sa.Column("problem", sa.String(64), nullable=True),
        sa.Column("aws_error_code", sa.String(200), nullable=True),
        *thing_and_certificate(),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
    )
    op.create_index("ix_registrations_at", "registrations", ["at"])
    op.create_index("ix_registrations_key_at", "registrations", ["key_id", "at"])
    op.create_index("ix_registrations_thing", "registrations", ["thing_name"])
    op.create_table(
        "idempotency",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("idempotency_key", sa.String(255), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("locked_until", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
        sa.Column("http_status", sa.Integer, nullable=True),
        sa.Column("response", sa.JSON, nullable=True),
        sa.Column("had_private_key", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    for table in ("idempotency", "registrations", "enrollments", "rate_windows", "api_keys"):
        op.drop_table(table)
