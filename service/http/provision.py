"""POST /provision: run fleet provisioning for the caller, behind the gate, with an audit record.

Order of checks: the key (401), the body (400/413/415/422), the key's scope (403, evaluated
before any transaction: rules take time), then in ONE store transaction the key's rate (429),
the Idempotency-Key (replay, 409, 422), the scope's verdict, the enrollments (403/409) and the
quota; then AWS IoT; then the attempt's settlement (service.callers.settlement) settles the
reservations and writes the audit record in one more transaction, or journals both when the
store is unavailable. A transaction costs more than its statements (docs/gate.md), so a
provision makes two. Every authenticated attempt, whatever its end, leaves one registration
record; a 401 is only counted (provisioner_unauthenticated_provisions_total).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, request
from marshmallow import ValidationError

from service import logs, metrics
from service.audit import Audit
from service.callers import settlement
from service.callers.gate import Gate
from service.callers.idempotency import Idempotency
from service.callers.settlement import Op, Settlement
from service.config import Settings
from service.errors import (
    AlreadyProvisioned,
    Forbidden,
    RateLimited,
    ServiceError,
    Unauthorized,
)
from service.http import auth, context
from service.http.body import read_json_object
from service.http.problems import rules_broken
from service.http.request_log import request_id
from service.http.responses import json_response
from service.http.schemas import ProvisionRequestSchema, ProvisionResponseSchema, RequestLimits
from service.store import Registration, Store

blueprint = Blueprint("provision", __name__)
log = logging.getLogger("service.http")

# Schemas are built once (building one costs ~0.1 ms a request) and hold no per-call state.
_RESPONSE_SCHEMA = ProvisionResponseSchema()
REPLAY_HEADER = "Idempotent-Replayed"


@functools.lru_cache(maxsize=8)
def _request_schema(settings: Settings) -> ProvisionRequestSchema:
    return ProvisionRequestSchema(limits=RequestLimits.from_settings(settings))


@dataclass
class _Attempt:
    """What the audit record of this attempt will say, filled in as the request goes."""

    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)
    template: str | None = None
    parameters: dict[str, str] | None = None
    flow: str | None = None
    idempotency_key: str | None = None
    thing_name: str | None = None
    certificate_id: str | None = None
    replayed: bool = False
    # What its settlement writes besides the audit record (settling the reservations).
    ops: list[Op] = field(default_factory=list)


@blueprint.post("/provision")
def provision() -> Response:
    attempt = _Attempt()
    status, error = 500, None
    try:
        response = _provision(attempt)
        status = response.status_code
        return response
    except ServiceError as raised:
        status, error = raised.status, raised
        raise
    finally:
        # Before the answer leaves: written to the store, or journaled (docs/gate.md).
        _count(attempt, status, error)
        registration = _registration(attempt, status, error)
        Audit.log_attempt(registration)
        if isinstance(error, Unauthorized):
            # Before authentication nobody is accountable and nothing was reserved: a count in
            # the metrics, not a row each, or anyone could fill the store (and slow every
            # provision) without a key.
            metrics.unauthenticated_provisions.inc()
        else:
            context.settler().settle(Settlement(registration, attempt.ops))
            _maybe_prune(attempt.at)


def _provision(attempt: _Attempt) -> Response:
    settings = context.settings()
    store = context.store()
    caller = auth.caller()
    data, body = _read_request(settings, attempt)
    key = _idempotency_key(attempt)
    template, parameters = data["template_name"], data["parameters"]
    # Before the transaction: nothing slow runs while it holds the store (SQLite's write lock).
    digest = Idempotency.digest(body) if key is not None else ""
    device = f"template '{template}', {_parameters_text(parameters)}"
    scope_refusal = Gate.scope_refusal(
        caller, template=template, parameters=parameters, server_key=data["csr"] is None
    )
    refusal: ServiceError | None = None
    replay = None
    with store.transaction() as tx:
        gate = Gate(tx, claim_seconds=_claim_seconds(settings))
        gate.check_rate(caller, attempt.at)
        if key is not None:
            replay = _idempotency(tx, settings).begin(caller, key, digest, attempt.at, device=device)
        if replay is None:
            try:
                if scope_refusal is not None:
                    raise scope_refusal
                admission = gate.admit(caller, template=template, parameters=parameters, now=attempt.at)
            except ServiceError as refused:
                # A refusal still counts against the key's rate (the transaction commits), or a key
                # could probe scopes and enrollments without limit; the attempt's record goes.
                if key is not None:
                    _idempotency(tx, settings).failed(caller, key)
                refusal = refused
    if replay is not None:
        attempt.replayed = True
        attempt.thing_name = replay.body.get("thingName")
        attempt.certificate_id = replay.body.get("certificateId")
        response = json_response(replay.body, replay.status)
        response.headers[REPLAY_HEADER] = "true"
        return response
    if refusal is not None:
        raise refusal
    try:
        result = context.provisioner().provision(
            template_name=template, parameters=parameters, csr=data["csr"], request_id=request_id()
        )
    except BaseException as error:
        if _outcome_unknown(error):
            # AWS may have registered the thing and the answer was lost: the device's enrollment
            # counts it (a 'once' entry refuses a second identity) and the quota unit stays used.
            attempt.ops += admission.uncertain(datetime.now(UTC))
        else:
            attempt.ops += admission.failed()
        if key is not None:
            attempt.ops.append(settlement.forget_idempotency(caller.key_id, key))
        raise
    attempt.thing_name, attempt.certificate_id = result.thing_name, result.certificate_id
    payload: dict[str, Any] = _RESPONSE_SCHEMA.dump(result)
    attempt.ops += admission.succeeded(result.thing_name, result.certificate_id, datetime.now(UTC))
    if key is not None:
        attempt.ops.append(settlement.finish_idempotency(caller.key_id, key, 201, payload))
    return json_response(payload, 201)


def _read_request(settings: Settings, attempt: _Attempt) -> tuple[dict[str, Any], dict[str, Any]]:
    body = read_json_object(settings.max_body_bytes)
    try:
        data: dict[str, Any] = _request_schema(settings).load(body)
    except ValidationError as invalid:
        raise rules_broken(invalid.messages_dict) from None
    attempt.template, attempt.parameters = data["template_name"], data["parameters"]
    attempt.flow = "csr" if data["csr"] is not None else "server-key"
    logs.bind(template=attempt.template, flow=attempt.flow)
    if data["csr"] is None and not settings.allow_server_generated_keys:
        raise rules_broken(
            {
                "csr": [
                    "required: this service does not create private keys, send a certificate signing request"
                ]
            }
        )
    return data, body


def _claim_seconds(settings: Settings) -> float:
    # How long a running request holds its device and Idempotency-Key: past its deadline and a
    # margin, an unsettled hold answers "may already be provisioned" (docs/gate.md).
    return settings.request_timeout_seconds + 30


def _idempotency(store: Store, settings: Settings) -> Idempotency:
    lock = timedelta(seconds=_claim_seconds(settings))
    return Idempotency(store, ttl=timedelta(hours=settings.idempotency_ttl_hours), lock=lock)


def _parameters_text(parameters: dict[str, str]) -> str:
    shown = ", ".join(f"{name}={value[:64]}" for name, value in list(parameters.items())[:4])
    return shown or "no parameters"


def _outcome_unknown(error: BaseException) -> bool:
    """A failure after RegisterThing was sent with no answer to tell: a timeout, a lost
    connection, an answer that could not be proven ours. AWS's own rejections and throttling
    are answers: nothing was registered."""
    return isinstance(error, ServiceError) and error.step == "register" and error.status >= 500


def _idempotency_key(attempt: _Attempt) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    attempt.idempotency_key = Idempotency.check_key(key)
    return key


def _maybe_prune(now: datetime) -> None:
    try:
        store = context.store()
    except ServiceError:
        return  # the store is unavailable: pruning waits for another request
    Audit(store, retention=_retention()).maybe_prune(now)


def _problem_name(error: ServiceError | None) -> str | None:
    # A refusal names its rule too (forbidden/template-not-allowed): what an auditor asks first.
    if error is None:
        return None
    rule = error.extra.get("rule")
    return f"{error.slug}/{rule}" if isinstance(rule, str) else error.slug


def _outcome(attempt: _Attempt, status: int) -> str:
    if attempt.replayed:
        return "replayed"
    if status == 201:
        return "provisioned"
    return "refused" if status < 500 else "failed"


def _count(attempt: _Attempt, status: int, error: ServiceError | None) -> None:
    """The attempt in the metrics (service.metrics): once per attempt, whatever the store does."""
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
        metrics.rate_limit_refusals.labels("api-key").inc()


def _retention() -> timedelta:
    return timedelta(days=context.settings().audit_retention_days)


def _registration(attempt: _Attempt, status: int, error: ServiceError | None) -> Registration:
    extra = error.extra if error is not None else {}
    return Registration(
        at=attempt.at,
        request_id=request_id(),
        key_id=auth.key_id_or_none(),
        caller_address=request.remote_addr,
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
        duration_ms=(time.monotonic() - attempt.started) * 1000,
        idempotency_key=attempt.idempotency_key,
        attempt_id=settlement.new_attempt_id(),
    )
