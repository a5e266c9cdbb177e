"""The JSON shapes of lifecycle answers, shared by the admin API and the CLI (camelCase, as the
rest of the API). Never a private key: a rotation's answer carries the new certificate (public)."""

from __future__ import annotations

from typing import Any

from service.aws import Certificate, Thing
from service.callers.views import enrollment_view, fields_view, registration_view, when
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
EVENT_FIELDS = ("id", "at", "action", "outcome", "actor", "thingName", "certificateId", "detail", "requestId")


def thing_view(thing: Thing) -> dict[str, Any]:
    return fields_view(thing, ("thingName", "thingArn", "thingTypeName", "attributes", "version"))


def certificate_view(certificate: Certificate, retirement: Retirement | None = None) -> dict[str, Any]:
    return {
        **fields_view(certificate, ("certificateId", "certificateArn", "status")),
        "createdAt": when(certificate.creation_date),
        "notAfter": when(certificate.not_after),
        "retirement": retirement_view(retirement) if retirement is not None else None,
    }


def retirement_view(retirement: Retirement) -> dict[str, Any]:
    return fields_view(retirement, RETIREMENT_FIELDS)


def event_view(event: LifecycleEvent) -> dict[str, Any]:
    return fields_view(event, EVENT_FIELDS)


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
    names = ("thingName", "thingDeleted", "certificates", "enrollmentsReopened", "enrollmentsHeld")
    return fields_view(done, names)


def rotation_view(rotation: Rotation) -> dict[str, Any]:
    return {
        **fields_view(
            rotation, ("thingName", "certificateId", "certificateArn", "certificatePem", "policies")
        ),
        "retiring": [{"certificateId": cid, "retireAt": when(at)} for cid, at in rotation.retiring],
        "retiredNow": rotation.retired_now,
    }


def sweep_view(report: SweepReport) -> dict[str, Any]:
    return {
        **fields_view(report, ("retired", "gone", "kept")),
        "failed": [{"certificateId": cid, "error": error} for cid, error in report.failed.items()],
        "unavailable": report.unavailable,
    }


def difference_view(difference: Difference) -> dict[str, Any]:
    return fields_view(difference, DIFFERENCE_FIELDS)


def reconciliation_view(result: Reconciliation) -> dict[str, Any]:
    return {
        **fields_view(result, ("since", "certificatesInAws", "issuedHere")),
        "differences": [difference_view(d) for d in result.differences],
    }
