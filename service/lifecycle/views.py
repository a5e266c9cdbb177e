"""The JSON shapes of lifecycle answers, shared by the admin API and the CLI (camelCase, as the
rest of the API). Never a private key: a rotation's answer carries the new certificate (public)."""

from __future__ import annotations

from typing import Any

from service.aws import Certificate, Thing
from service.callers.views import enrollment_view, registration_view, when
from service.lifecycle.certificates import StatusChange
from service.lifecycle.devices import Decommissioning, DeviceView
from service.lifecycle.orphans import SweepReport
from service.lifecycle.reconcile import Difference, Reconciliation
from service.lifecycle.rotation import Rotation
from service.store.lifecycle import LifecycleEvent, Retirement

DIFFERENCE_FIELDS = ("kind", "certificateId", "thingName", "awsStatus", "expectedStatus", "at", "detail")
RETIREMENT_FIELDS = (
    "certificateId",
    "kind",
    "reason",
    "state",
    "thingName",
    "template",
    "requestId",
    "recordedAt",
    "dueAt",
    "attempts",
    "lastError",
    "lastAttemptAt",
    "doneAt",
)


def thing_view(thing: Thing) -> dict[str, Any]:
    return {
        "thingName": thing.thing_name,
        "thingArn": thing.thing_arn,
        "thingTypeName": thing.thing_type_name,
        "attributes": thing.attributes,
        "version": thing.version,
    }


def certificate_view(certificate: Certificate, retirement: Retirement | None = None) -> dict[str, Any]:
    return {
        "certificateId": certificate.certificate_id,
        "certificateArn": certificate.certificate_arn,
        "status": certificate.status,
        "createdAt": when(certificate.creation_date),
        "notAfter": when(certificate.not_after),
        "retirement": retirement_view(retirement) if retirement is not None else None,
    }


def retirement_view(retirement: Retirement) -> dict[str, Any]:
    return {
        "certificateId": retirement.certificate_id,
        "kind": retirement.kind,
        "reason": retirement.reason,
        "state": retirement.state,
        "thingName": retirement.thing_name,
        "template": retirement.template,
        "requestId": retirement.request_id,
        "recordedAt": when(retirement.recorded_at),
        "dueAt": when(retirement.due_at),
        "attempts": retirement.attempts,
        "lastError": retirement.last_error,
        "lastAttemptAt": when(retirement.last_attempt_at),
        "doneAt": when(retirement.done_at),
    }


def event_view(event: LifecycleEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": when(event.at),
        "action": event.action,
        "outcome": event.outcome,
        "actor": event.actor,
        "thingName": event.thing_name,
        "certificateId": event.certificate_id,
        "detail": event.detail,
        "requestId": event.request_id,
    }


def device_view(device: DeviceView) -> dict[str, Any]:
    return {
        **thing_view(device.thing),
        "certificates": [
            certificate_view(c, device.retirements.get(c.certificate_id)) for c in device.certificates
        ],
        "registrations": [registration_view(r) for r in device.registrations],
        "events": [event_view(e) for e in device.events],
        "enrollment": enrollment_view(device.enrollment) if device.enrollment is not None else None,
    }


def status_change_view(change: StatusChange) -> dict[str, Any]:
    return {
        **certificate_view(change.certificate),
        "previousStatus": change.previous_status,
        "things": change.things,
    }


def decommissioning_view(done: Decommissioning) -> dict[str, Any]:
    return {
        "thingName": done.thing_name,
        "thingDeleted": done.thing_deleted,
        "certificates": done.certificates,
        "enrollmentsReopened": done.enrollments_reopened,
        "enrollmentsHeld": done.enrollments_held,
    }


def rotation_view(rotation: Rotation) -> dict[str, Any]:
    return {
        "thingName": rotation.thing_name,
        "certificateId": rotation.certificate_id,
        "certificateArn": rotation.certificate_arn,
        "certificatePem": rotation.certificate_pem,
        "policies": rotation.policies,
        "retiring": [{"certificateId": cid, "retireAt": when(at)} for cid, at in rotation.retiring],
        "retiredNow": rotation.retired_now,
    }


def sweep_view(report: SweepReport) -> dict[str, Any]:
    return {
        "retired": report.retired,
        "gone": report.gone,
        "kept": report.kept,
        "failed": [{"certificateId": cid, "error": error} for cid, error in report.failed.items()],
        "unavailable": report.unavailable,
    }


def difference_view(difference: Difference) -> dict[str, Any]:
    return {
        "kind": difference.kind,
        "certificateId": difference.certificate_id,
        "thingName": difference.thing_name,
        "awsStatus": difference.aws_status,
        "expectedStatus": difference.expected_status,
        "at": when(difference.at),
        "detail": difference.detail,
    }


def reconciliation_view(result: Reconciliation) -> dict[str, Any]:
    return {
        "since": when(result.since),
        "certificatesInAws": result.certificates_in_aws,
        "issuedHere": result.issued_here,
        "differences": [difference_view(d) for d in result.differences],
    }
