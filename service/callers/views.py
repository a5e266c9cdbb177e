"""The JSON shapes of keys, enrollments, registration records and device CAs, shared by the admin
API and CLI."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from service.store import EnrollmentRecord, KeyRecord, Registration
from service.store.device_cas import BlockRecord, CrlRecord, DeviceCaRecord


def when(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def fields_view(record: object, names: Iterable[str]) -> dict[str, Any]:
    """`record`'s attributes as JSON, each under its camelCase name (`lastUsedAt` is the
    attribute `last_used_at`), in this order; a time as ISO 8601 in UTC (`when`)."""
    view = {}
    for name in names:
        value = getattr(record, _SNAKE.sub(r"_\1", name).lower())
        view[name] = when(value) if isinstance(value, datetime) else value
    return view


_SNAKE = re.compile(r"([A-Z])")


KEY_LIMITS_AND_TIMES = (
    "scope",
    "maxProvisions",
    "ratePerMinute",
    "provisions",
    "createdAt",
    "expiresAt",
    "revokedAt",
    "lastUsedAt",
)
ENROLLMENT_FIELDS = (
    "template",
    "parameter",
    "value",
    "enabled",
    "reprovision",
    "provisions",
    "lastThingName",
    "lastCertificateId",
    "lastProvisionedAt",
    "createdAt",
)


def key_view(record: KeyRecord, now: datetime) -> dict[str, Any]:
    if record.revoked_at is not None:
        state = "revoked"
    elif record.expires_at is not None and record.expires_at <= now:
        state = "expired"
    else:
        state = "active"
    return {
        **fields_view(record, ("keyId", "name", "role")),
        "state": state,
        **fields_view(record, KEY_LIMITS_AND_TIMES),
    }


def enrollment_view(record: EnrollmentRecord) -> dict[str, Any]:
    return fields_view(record, ENROLLMENT_FIELDS)


REGISTRATION_FIELDS = (
    "id",
    "at",
    "requestId",
    "keyId",
    "callerAddress",
    "template",
    "parameters",
    "flow",
    "outcome",
    "httpStatus",
    "step",
    "problem",
    "awsErrorCode",
    "thingName",
    "certificateId",
    "durationMs",
    "idempotencyKey",
    "deviceCaId",
    "deviceIssuer",
    "deviceSerial",
    "deviceFingerprint",
)


def registration_view(record: Registration) -> dict[str, Any]:
    view = fields_view(record, REGISTRATION_FIELDS)
    view["durationMs"] = round(record.duration_ms, 1)
    return view


DEVICE_CA_FIELDS = (
    "caId",
    "name",
    "template",
    "subject",
    "fingerprintSha256",
    "certificates",
    "parameters",
    "reprovision",
    "enabled",
    "maxChainDepth",
    "maxProvisions",
    "ratePerMinute",
    "provisions",
    "revision",
    "createdAt",
    "updatedAt",
)


def device_ca_view(record: DeviceCaRecord) -> dict[str, Any]:
    return fields_view(record, DEVICE_CA_FIELDS)


def block_view(record: BlockRecord) -> dict[str, Any]:
    return fields_view(record, ("kind", "value", "reason", "createdAt"))


def crl_view(record: CrlRecord) -> dict[str, Any]:
    return fields_view(record, ("issuer", "thisUpdate", "nextUpdate", "revoked", "loadedAt"))
