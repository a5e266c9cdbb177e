"""The store's tables (SQLAlchemy Core). Alembic migrations create them; this is what queries use.

Times are UTC and timezone-aware. JSON columns hold only what is safe to keep: never a private
key, an ownership token, an API key secret or a credential (a key is kept as a SHA-256 hash).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite keeps no zone, so it is put back on reading."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("name", String(200), nullable=False, default=""),
    Column("role", String(16), nullable=False),
    # allowed templates, parameter rules, server keys, enrolled only (callers.model.Scope)
    Column("scope", JSON, nullable=False),
    Column("max_provisions", Integer, nullable=True),
    Column("rate_per_minute", Integer, nullable=True),
    Column("provisions", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=True),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("last_used_at", UtcDateTime(), nullable=True),
)


def window_table(name: str, owner: str) -> Table:
    """An owner's requests in one fixed minute (service.store.limits): `window` is unix time // 60."""
    return Table(
        name,
        metadata,
        Column(owner, String(32), primary_key=True),
        Column("window", BigInteger, primary_key=True),
        Column("requests", Integer, nullable=False),
    )


def audit_id() -> Column[int]:
    """The id of an audit trail's rows: 64 bits, and SQLite's INTEGER so that it autoincrements."""
    return Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)


# A key's requests in one fixed minute: the rate limit shared by every worker and host.
rate_windows = window_table("rate_windows", "key_id")

enrollments = Table(
    "enrollments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("template", String(36), nullable=False),
    Column("parameter", String(128), nullable=False),
    Column("value", String(2048), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("reprovision", String(8), nullable=False, default="once"),  # once | allow
    Column("provisions", Integer, nullable=False, default=0),
    Column("last_thing_name", String(128), nullable=True),
    Column("last_certificate_id", String(64), nullable=True),
    Column("last_provisioned_at", UtcDateTime(), nullable=True),
    # A provision holds the entry while it runs, so a 'once' entry cannot be provisioned twice
    # by two requests at the same time; a crashed holder's claim lapses at claim_expires_at.
    Column("claim", String(64), nullable=True),
    Column("claim_expires_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("template", "parameter", "value", name="uq_enrollment"),
)

registrations = Table(
    "registrations",
    metadata,
    audit_id(),
    Column("at", UtcDateTime(), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("caller_address", String(64), nullable=True),
    Column("template", String(64), nullable=True),
    Column("parameters", JSON, nullable=True),
    Column("flow", String(16), nullable=True),  # csr | server-key
    Column("outcome", String(16), nullable=False),  # provisioned | refused | failed | replayed
    Column("http_status", Integer, nullable=False),
    Column("step", String(16), nullable=True),
    Column("problem", String(64), nullable=True),  # the problem type's slug
    Column("aws_error_code", String(200), nullable=True),
    Column("thing_name", String(128), nullable=True),
    Column("certificate_id", String(64), nullable=True),
    Column("duration_ms", Float, nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    # One per attempt: the key that makes writing an attempt's settlement idempotent.
    Column("attempt_id", String(32), nullable=True),
    # A device caller (service.callers.presented): its device CA and certificate, never its key.
    Column("device_ca_id", String(32), nullable=True),
    Column("device_issuer", String(1024), nullable=True),  # RFC 4514
    Column("device_serial", String(128), nullable=True),  # upper-case hex
    Column("device_fingerprint", String(64), nullable=True),  # SHA-256 of the DER, lower-case hex
)
Index("ix_registrations_at", registrations.c.at)
Index("ix_registrations_device_at", registrations.c.device_fingerprint, registrations.c.at)
Index("uq_registrations_attempt", registrations.c.attempt_id, unique=True)
Index("ix_registrations_key_at", registrations.c.key_id, registrations.c.at)
Index("ix_registrations_thing", registrations.c.thing_name)

idempotency = Table(
    "idempotency",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("request_sha256", String(64), nullable=False),
    Column("state", String(8), nullable=False),  # running | done
    Column("locked_until", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("http_status", Integer, nullable=True),
    # The first response without its private key (a replay cannot show the key again).
    Column("response", JSON, nullable=True),
    Column("had_private_key", Boolean, nullable=False, default=False),
)

# The account-wide pace of calls to AWS IoT (service.provisioning.pace): the next free slot, in
# wall-clock seconds, moved by one atomic UPDATE per provision from every worker and host.
aws_pace = Table(
    "aws_pace",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("next_at", Float(precision=53), nullable=False),
)
