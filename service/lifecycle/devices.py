"""A device as AWS IoT and the audit trail know it, and its decommissioning.

The view joins the thing (DescribeThing), its certificates and their status (ListThingPrincipals,
DescribeCertificate) with what the service recorded: the provisioning attempts that named the
thing, the lifecycle actions on it and its certificates, the retirements scheduled for them, and
its enrollment.

Decommissioning (a returned or scrapped device): detach each certificate, deactivate it, delete it
(its policies with it), delete the thing, and let the device's enrollment provision again (a
`once` entry counts from zero; the audit trail keeps every earlier provision). A certificate still
attached to another thing is detached and deactivated but not deleted. AWS propagates a detachment
within seconds: a deletion it still refuses is retried briefly, then left to the sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from service.aws import Certificate, ControlPlaneRejected, Thing, certificate_id_of
from service.errors import NotFound, ServiceError
from service.lifecycle.base import Act, Lifecycle
from service.lifecycle.orphans import take_out
from service.store import EnrollmentRecord, Registration, RegistrationFilter
from service.store.lifecycle import LifecycleEvent, Retirement

# How long a deletion AWS refuses for an attachment it has not forgotten yet is retried.
SETTLE_SECONDS = 10.0


@dataclass(frozen=True)
class DeviceView:
    thing: Thing
    certificates: list[Certificate]
    retirements: dict[str, Retirement]
    registrations: list[Registration]
    events: list[LifecycleEvent]
    enrollment: EnrollmentRecord | None


@dataclass
class Decommissioning:
    thing_name: str
    certificates: list[dict[str, object]] = field(default_factory=list)
    thing_deleted: bool = False
    enrollments_reopened: int = 0
    enrollments_held: int = 0


def view(lifecycle: Lifecycle, thing_name: str, *, history: int = 50) -> DeviceView:
    store = lifecycle.store()
    control = lifecycle.control()
    thing = control.describe_thing(thing_name)
    if thing is None:
        raise NotFound(f"AWS IoT has no thing named {thing_name!r}")
    certificates = []
    for arn in control.thing_principals(thing_name):
        found = control.describe_certificate(certificate_id_of(arn))
        if found is not None:
            certificates.append(found)
    ids = [c.certificate_id for c in certificates]
    records = lifecycle.records()
    registrations = store.registrations.page(RegistrationFilter(thing_name=thing_name), None, history)
    events = records.events(thing_name=thing_name, certificate_ids=ids, limit=history)
    return DeviceView(
        thing=thing,
        certificates=certificates,
        retirements=records.for_certificates(ids),
        registrations=registrations,
        events=events,
        enrollment=_enrollment(lifecycle, thing_name, registrations),
    )


def decommission(
    lifecycle: Lifecycle, thing_name: str, *, actor: str | None, request_id: str | None = None
) -> Decommissioning:
    records = lifecycle.records()
    control = lifecycle.control()
    if control.describe_thing(thing_name) is None:
        raise NotFound(f"AWS IoT has no thing named {thing_name!r}")
    done = Decommissioning(thing_name)
    act = Act("decommission", actor, thing_name=thing_name, request_id=request_id)
    try:
        for arn in control.thing_principals(thing_name):
            done.certificates.append(_take_certificate(lifecycle, thing_name, arn))
        _settled(lambda: control.delete_thing(thing_name))
        done.thing_deleted = True
    except ServiceError as error:
        lifecycle.failed(act, error, {"certificates": done.certificates})
        raise
    registrations = lifecycle.store().registrations.page(RegistrationFilter(thing_name=thing_name), None, 20)
    entries = set(records.enrollments_of_thing(thing_name))
    matched = _enrollment(lifecycle, thing_name, registrations)
    if matched is not None:
        entries.add(matched.id)
    entries |= _entries_of_lost_answers(lifecycle, thing_name, done)
    for entry in sorted(entries):
        if records.reopen_enrollment(entry):
            done.enrollments_reopened += 1
        else:
            done.enrollments_held += 1  # a provision holds it right now
    lifecycle.event(
        act,
        "done",
        {
            "certificates": done.certificates,
            "thingDeleted": True,
            "enrollmentsReopened": done.enrollments_reopened,
            "enrollmentsHeld": done.enrollments_held,
        },
    )
    return done


def _take_certificate(lifecycle: Lifecycle, thing_name: str, arn: str) -> dict[str, object]:
    control, records = lifecycle.control(), lifecycle.records()
    certificate_id = certificate_id_of(arn)
    certificate = control.describe_certificate(certificate_id)
    if certificate is None:
        control.detach_thing_principal(thing_name, arn)
        return {"certificateId": certificate_id, "status": None, "deleted": False}
    others = [t for t in control.principal_things(arn) if t != thing_name]
    now = lifecycle.now()
    retirement = Retirement(
        certificate_id=certificate_id,
        kind="retirement",
        reason="decommissioned",
        recorded_at=now,
        due_at=now,
        thing_name=thing_name,
    )
    if others:
        control.detach_thing_principal(thing_name, arn)
        if certificate.status == "ACTIVE":
            control.update_certificate(certificate_id, "INACTIVE")
        return {
            "certificateId": certificate_id,
            "status": certificate.status,
            "deleted": False,
            "stillAttachedTo": others,
        }
    records.schedule([retirement])
    try:
        _settled(lambda: take_out(lifecycle, certificate))
    except ControlPlaneRejected as error:
        if error.status != 409:
            raise
        # Detached and deactivated, but AWS still refuses the deletion: the sweep finishes it.
        return {
            "certificateId": certificate_id,
            "status": certificate.status,
            "deleted": False,
            "sweep": True,
        }
    records.finish(certificate_id, "retired", lifecycle.now())
    return {"certificateId": certificate_id, "status": certificate.status, "deleted": True}


def _settled(action: Callable[[], object]) -> None:
    """Run `action`, again while AWS refuses it with a conflict, for up to SETTLE_SECONDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    pause = 0.25
    while True:
        try:
            action()
            return
        except ControlPlaneRejected as error:
            still_attached = error.status == 409 or "still attached" in error.detail
            if not still_attached or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def _entries_of_lost_answers(lifecycle: Lifecycle, thing_name: str, done: Decommissioning) -> set[int]:
    """A provision whose RegisterThing answer was lost counted its `once` entry without a thing
    name (docs/gate.md); its certificate, an orphan, is attached to this thing (or was, until the
    sweep detached it): its request's audit record names the device's template and parameters."""
    records, store = lifecycle.records(), lifecycle.store()
    request_ids = set()
    for taken in done.certificates:
        recorded = records.get(str(taken["certificateId"]))
        if recorded is not None and recorded.kind == "orphan" and recorded.request_id:
            request_ids.add(recorded.request_id)
    for event in records.events(thing_name=thing_name, limit=200):
        if event.action == "retire" and event.request_id and (event.detail or {}).get("kind") == "orphan":
            request_ids.add(event.request_id)
    entries = set()
    for attempt in records.attempts(request_ids):
        if attempt.template and attempt.parameters:
            found = store.enrollments.match(attempt.template, attempt.parameters)
            if found is not None:
                entries.add(found.id)
    return entries


def _enrollment(
    lifecycle: Lifecycle, thing_name: str, registrations: list[Registration]
) -> EnrollmentRecord | None:
    """The enrollment entry of the device: the one its last provision claimed."""
    store = lifecycle.store()
    for record in registrations:
        if record.outcome == "provisioned" and record.template and record.parameters:
            found = store.enrollments.match(record.template, record.parameters)
            if found is not None:
                return found
    for entry_id in lifecycle.records().enrollments_of_thing(thing_name):
        for entry in store.enrollments.page(None, entry_id - 1, 1):
            return entry
    return None
