"""POST /provision, the JSON door: read the request, hand it to the provision use case, render.

Order of checks here: the key (401), then the body (400/413/415/422). Everything after, from the
key's scope to the audit record, is the use case's (service.provisioning.use_case), the same for
every door; a request this door could not read is recorded by it too. Failures are raised and
rendered as problem+json in one place (service.http.problems).
"""

from __future__ import annotations

import functools
from typing import Any

from flask import Blueprint, Response, request
from marshmallow import ValidationError

from service.callers.idempotency import Idempotency
from service.config import Settings
from service.http import auth, context
from service.http.body import read_json_object
from service.http.problems import rules_broken
from service.http.request_log import request_id
from service.http.responses import json_response
from service.http.schemas import ProvisionRequestSchema, ProvisionResponseSchema, RequestLimits
from service.provisioning.request import Arrival, IdempotencyKey, ProvisionRequest

blueprint = Blueprint("provision", __name__)

# Schemas are built once (building one costs ~0.1 ms a request) and hold no per-call state.
_RESPONSE_SCHEMA = ProvisionResponseSchema()
REPLAY_HEADER = "Idempotent-Replayed"


@functools.lru_cache(maxsize=8)
def _request_schema(settings: Settings) -> ProvisionRequestSchema:
    return ProvisionRequestSchema(limits=RequestLimits.from_settings(settings))


@blueprint.post("/provision")
def provision() -> Response:
    provisioning = context.provisioning()
    arrival = Arrival(request_id(), request.remote_addr)
    try:
        asked = _read(arrival)
    except BaseException as error:
        provisioning.unreadable(arrival, auth.caller_or_none(), error)
        raise
    outcome = provisioning.provision(asked)
    response = json_response(_RESPONSE_SCHEMA.dump(outcome), 201)
    if outcome.replayed:
        response.headers[REPLAY_HEADER] = "true"
    return response


def _read(arrival: Arrival) -> ProvisionRequest:
    caller = auth.caller()
    settings = context.settings()
    body = read_json_object(settings.max_body_bytes)
    try:
        data: dict[str, Any] = _request_schema(settings).load(body)
    except ValidationError as invalid:
        raise rules_broken(invalid.messages_dict) from None
    key = request.headers.get("Idempotency-Key")
    return ProvisionRequest(
        arrival=arrival,
        caller=caller,
        template=data["template_name"],
        parameters=data["parameters"],
        csr=data["csr"],
        # "The same request" is the same JSON body, whatever its formatting or key order.
        idempotency=IdempotencyKey(key, Idempotency.digest(body)) if key is not None else None,
    )
