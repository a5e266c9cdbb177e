"""A certificate's status, changed through UpdateCertificate: revoke, suspend, reactivate.

AWS IoT disconnects every device that used a certificate within a few minutes of it leaving
ACTIVE, and refuses it at the next connect (UpdateCertificate, AWS IoT API reference; the
emulator does it after `--disconnect-delay`, 1 s by default). REVOKED is final; INACTIVE can be
set back to ACTIVE (reactivate).
"""

from __future__ import annotations

from dataclasses import dataclass

from service.aws import Certificate
from service.errors import NotFound, ServiceError
from service.lifecycle.base import Act, Lifecycle

# action -> the status it sets
STATUS_OF = {"revoke": "REVOKED", "suspend": "INACTIVE", "reactivate": "ACTIVE"}


@dataclass(frozen=True)
class StatusChange:
    certificate: Certificate
    previous_status: str
    things: list[str]


def change_status(
    lifecycle: Lifecycle,
    certificate_id: str,
    action: str,
    *,
    actor: str | None,
    request_id: str | None = None,
) -> StatusChange:
    """Set the status `action` stands for; NotFound when AWS has no such certificate."""
    status = STATUS_OF[action]
    lifecycle.records()  # without a store nothing here is audited: refused first
    control = lifecycle.control()
    before = control.describe_certificate(certificate_id)
    if before is None:
        raise NotFound(f"AWS IoT has no certificate {certificate_id}")
    things = control.principal_things(before.certificate_arn)
    thing_name = things[0] if things else None
    act = Act(action, actor, thing_name=thing_name, certificate_id=certificate_id, request_id=request_id)
    try:
        control.update_certificate(certificate_id, status)
    except ServiceError as error:
        lifecycle.failed(act, error, {"status": before.status})
        raise
    lifecycle.event(act, "done", {"from": before.status, "to": status, "things": things})
    after = control.describe_certificate(certificate_id) or before
    return StatusChange(after, before.status, things)
