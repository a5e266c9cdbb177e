"""The JSON shapes of keys, enrollments, registration records and device CAs, shared by the admin
API and CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.store import EnrollmentRecord, KeyRecord, Registration
from service.store.device_cas import BlockRecord, CrlRecord, DeviceCaRecord


def when(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def key_view(record: KeyRecord, now: datetime) -> dict[str, Any]:
    if record.revoked_at is not None:
        state = "revoked"
    elif record.expires_at is not None and record.expires_at <= now:
        state = "expired"
    else:
        state = "active"
    return {
        "keyId": record.key_id,
        "name": record.name,
        "role": record.role,
        "state": state,
        "scope": record.scope,
        "maxProvisions": record.max_provisions,
        "ratePerMinute": record.rate_per_minute,
        "provisions": record.provisions,
        "createdAt": when(record.created_at),
        "expiresAt": when(record.expires_at),
        "revokedAt": when(record.revoked_at),
        "lastUsedAt": when(record.last_used_at),
    }


def enrollment_view(record: EnrollmentRecord) -> dict[str, Any]:
    return {
        "template": record.template,
        "parameter": record.parameter,
        "value": record.value,
        "enabled": record.enabled,
        "reprovision": record.reprovision,
        "provisions": record.provisions,
        "lastThingName": record.last_thing_name,
        "lastCertificateId": record.last_certificate_id,
        "lastProvisionedAt": when(record.last_provisioned_at),
        "createdAt": when(record.created_at),
    }


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
    return {
        "id": record.id,
        "at": when(record.at),
        "requestId": record.request_id,
        "keyId": record.key_id,
        "callerAddress": record.caller_address,
        "template": record.template,
        "parameters": record.parameters,
        "flow": record.flow,
        "outcome": record.outcome,
        "httpStatus": record.http_status,
        "step": record.step,
        "problem": record.problem,
        "awsErrorCode": record.aws_error_code,
        "thingName": record.thing_name,
        "certificateId": record.certificate_id,
        "durationMs": round(record.duration_ms, 1),
        "idempotencyKey": record.idempotency_key,
        "deviceCaId": record.device_ca_id,
        "deviceIssuer": record.device_issuer,
        "deviceSerial": record.device_serial,
        "deviceFingerprint": record.device_fingerprint,
    }


def device_ca_view(record: DeviceCaRecord) -> dict[str, Any]:
    return {
        "caId": record.ca_id,
        "name": record.name,
        "template": record.template,
        "subject": record.subject,
        "fingerprintSha256": record.fingerprint_sha256,
        "certificates": record.certificates,
        "parameters": record.parameters,
        "reprovision": record.reprovision,
        "enabled": record.enabled,
        "maxChainDepth": record.max_chain_depth,
        "maxProvisions": record.max_provisions,
        "ratePerMinute": record.rate_per_minute,
        "provisions": record.provisions,
        "revision": record.revision,
        "createdAt": when(record.created_at),
        "updatedAt": when(record.updated_at),
    }


def block_view(record: BlockRecord) -> dict[str, Any]:
    return {
        "kind": record.kind,
        "value": record.value,
        "reason": record.reason,
        "createdAt": when(record.created_at),
    }


def crl_view(record: CrlRecord) -> dict[str, Any]:
    return {
        "issuer": record.issuer,
        "thisUpdate": when(record.this_update),
        "nextUpdate": when(record.next_update),
        "revoked": record.revoked,
        "loadedAt": when(record.loaded_at),
    }
