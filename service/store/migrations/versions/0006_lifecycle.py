"""Lifecycle: certificates to retire (orphans the service never handed out, and certificates
replaced or decommissioned), the lifecycle actions' audit trail, and registrations by certificate.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.store.migrations.columns import UTC_TIME, audit_id, thing_and_certificate

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificate_retirements",
        sa.Column("certificate_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("thing_name", sa.String(128), nullable=True),
        sa.Column("template", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("recorded_at", UTC_TIME, nullable=False),
        sa.Column("due_at", UTC_TIME, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("last_attempt_at", UTC_TIME, nullable=True),
        sa.Column("done_at", UTC_TIME, nullable=True),
        sa.Column("lease_until", UTC_TIME, nullable=True),
    )
    op.create_index("ix_retirements_state_due", "certificate_retirements", ["state", "due_at"])
    op.create_index("ix_retirements_thing", "certificate_retirements", ["thing_name"])
    op.create_table(
        "lifecycle_events",
        audit_id(),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(64), nullable=True),
        *thing_and_certificate(),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON, nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_lifecycle_events_thing", "lifecycle_events", ["thing_name", "id"])
    op.create_index("ix_lifecycle_events_certificate", "lifecycle_events", ["certificate_id"])
    op.create_index("ix_registrations_certificate", "registrations", ["certificate_id"])


def downgrade() -> None:
    op.drop_index("ix_registrations_certificate", "registrations")
    op.drop_table("lifecycle_events")
    op.drop_table("certificate_retirements")
