"""What one provision attempt leaves behind: its metrics, its log line and its audit record.

An `Attempt` is filled in as the request goes (service.provisioning.use_case); `finish` counts it
once in the metrics, whatever the store does, logs it and returns its registration record, which
the attempt's settlement writes. Nothing secret is put in any of them: key ids, never keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from service import logs, metrics
from service.audit import Audit
from service.callers import settlement
from service.callers.devices import PresentedCertificate
from service.callers.model import AnyCaller, Caller, DeviceCaller
from service.callers.settlement import Op
from service.errors import (
    AlreadyProvisioned,
    DeviceRefused,
    Forbidden,
    RateLimited,
    ServiceError,
    Unauthorized,
)
from service.provisioning.request import Arrival, ProvisionRequest
from service.store import Registration


@dataclass
class Attempt:
    """What the audit record of one attempt will say, filled in as it goes."""

    arrival: Arrival
    caller: AnyCaller | None = None
    template: str | None = None
    parameters: dict[str, str] | None = None
    flow: str | None = None
    idempotency_key: str | None = None
    thing_name: str | None = None
    certificate_id: str | None = None
    replayed: bool = False
    # What its settlement writes besides the audit record (settling the reservations).
    ops: list[Op] = field(default_factory=list)

    @classmethod
    def of(cls, request: ProvisionRequest) -> Attempt:
        logs.bind(template=request.template, flow=request.flow)
        return cls(
            request.arrival,
            request.caller,
            template=request.template,
            parameters=dict(request.parameters),
            flow=request.flow,
        )


def _device(attempt: Attempt, error: ServiceError | None) -> tuple[str | None, PresentedCertificate | None]:
    """The device CA and certificate of a device caller, or of a refused device certificate."""
    if isinstance(attempt.caller, DeviceCaller):
        return attempt.caller.ca_id, attempt.caller.identity.certificate
    if isinstance(error, DeviceRefused) and isinstance(error.certificate, PresentedCertificate):
        return None, error.certificate
    return None, None


def finish(attempt: Attempt, status: int, error: ServiceError | None) -> Registration:
    """Count and log the attempt, which ended with `status` (and `error`); its audit record."""
    _count(attempt, status, error)
    registration = _registration(attempt, status, error)
    Audit.log_attempt(registration)
    return registration


def _outcome(attempt: Attempt, status: int) -> str:
    if attempt.replayed:
        return "replayed"
    if status == 201:
        return "provisioned"
    return "refused" if status < 500 else "failed"


def _count(attempt: Attempt, status: int, error: ServiceError | None) -> None:
    outcome = _outcome(attempt, status)
    logs.bind(outcome=outcome)
    metrics.provisions.labels(metrics.template_label(attempt.template), attempt.flow or "none", outcome).inc()
    if attempt.replayed:
        metrics.idempotent_replays.inc()
    if isinstance(error, Forbidden):
        metrics.gate_refusals.labels(error.rule).inc()
    elif isinstance(error, AlreadyProvisioned):
        rule = "in-progress" if error.extra.get("inProgress") else "already-provisioned"
        metrics.gate_refusals.labels(rule).inc()
    elif isinstance(error, RateLimited):
        who = "device-ca" if isinstance(attempt.caller, DeviceCaller) else "api-key"
        metrics.rate_limit_refusals.labels(who).inc()
    elif isinstance(error, DeviceRefused):
        metrics.gate_refusals.labels(error.slug).inc()
    elif isinstance(error, Unauthorized):
        metrics.unauthenticated_provisions.inc()


def _problem_name(error: ServiceError | None) -> str | None:
    # A refusal names its rule too (forbidden/template-not-allowed): what an auditor asks first.
    if error is None:
        return None
    rule = error.extra.get("rule")
    return f"{error.slug}/{rule}" if isinstance(rule, str) else error.slug


def _registration(attempt: Attempt, status: int, error: ServiceError | None) -> Registration:
    extra = error.extra if error is not None else {}
    arrival = attempt.arrival
    device_ca_id, device = _device(attempt, error)
    return Registration(
        at=arrival.at,
        request_id=arrival.request_id,
        key_id=attempt.caller.key_id if isinstance(attempt.caller, Caller) else None,
        caller_address=arrival.caller_address,
        template=attempt.template,
        parameters=attempt.parameters,
        flow=attempt.flow,
        outcome=_outcome(attempt, status),
        http_status=status,
        step=error.step if error is not None else None,
        problem=_problem_name(error),
        aws_error_code=extra.get("errorCode") if isinstance(extra.get("errorCode"), str) else None,
        thing_name=attempt.thing_name,
        certificate_id=attempt.certificate_id,
        duration_ms=(time.monotonic() - arrival.started) * 1000,
        idempotency_key=attempt.idempotency_key,
        attempt_id=settlement.new_attempt_id(),
        device_ca_id=device_ca_id,
        device_issuer=device.issuer[:1024] if device is not None else None,
        device_serial=device.serial[:128] if device is not None else None,
        device_fingerprint=device.fingerprint_sha256 if device is not None else None,
    )
