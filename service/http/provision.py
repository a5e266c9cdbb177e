"""POST /provision, the JSON door: read the request, hand it to the provision use case, render.

Its caller is an API key (`Authorization: Bearer`), or, with no Authorization header, the device
certificate presented over mutual TLS (service.callers.presented): its enrollment group names
the template and the parameters, and the body may add only parameters the group leaves open.
Order of checks here: the key (401), then the body (400/413/415/422); for a device, the body's
JSON (400/413/415), its certificate (403, a refusal of its own type) and then the body's rules
(422). Everything after, from the caller's scope to the audit record, is the use case's
(service.provisioning.use_case), the same for every door; a request this door could not read is
recorded by it too. Failures are raised and rendered as problem+json in one place
(service.http.problems).
"""

from __future__ import annotations

import functools

from flask import Blueprint, Response, request

from service.callers.idempotency import Idempotency
from service.callers.model import AnyCaller
from service.config import Settings
from service.http import auth, checked, context
from service.http.body import read_json_object
from service.http.request_log import request_id
from service.http.responses import json_response
from service.http.schemas import (
    DeviceProvisionRequestSchema,
    ProvisionRequestSchema,
    ProvisionResponseSchema,
    RequestLimits,
)
from service.provisioning.request import Arrival, IdempotencyKey, ProvisionRequest

blueprint = Blueprint("provision", __name__)

# Schemas are built once (building one costs ~0.1 ms a request) and hold no per-call state.
_RESPONSE_SCHEMA = ProvisionResponseSchema()
REPLAY_HEADER = "Idempotent-Replayed"


@functools.lru_cache(maxsize=8)
def _request_schema(settings: Settings, device: bool) -> ProvisionRequestSchema:
    kind = DeviceProvisionRequestSchema if device else ProvisionRequestSchema
    return kind(limits=RequestLimits.from_settings(settings))


@blueprint.post("/provision")
def provision() -> Response:
    provisioning = context.provisioning()
    arrival = Arrival(request_id(), request.remote_addr)
    reader = _Reader(arrival)
    try:
        asked = reader.read()
    except BaseException as error:
        provisioning.unreadable(arrival, reader.caller, error)
        raise
    outcome = provisioning.provision(asked)
    response = json_response(_RESPONSE_SCHEMA.dump(outcome), 201)
    if outcome.replayed:
        response.headers[REPLAY_HEADER] = "true"
    return response


class _Reader:
    """Reads one request; `caller` is who it is as soon as that is known (for the audit trail)."""

    def __init__(self, arrival: Arrival) -> None:
        self.arrival = arrival
        self.caller: AnyCaller | None = None

    def read(self) -> ProvisionRequest:
        settings = context.settings()
        chain = None
        if "Authorization" not in request.headers:
            chain = context.device_callers().presented(request.environ)
        if chain is None:
            self.caller = auth.caller()
            body = read_json_object(settings.max_body_bytes)
            data = checked.load(_request_schema(settings, False), body)
            template, parameters = data["template_name"], data["parameters"]
        else:
            body = read_json_object(settings.max_body_bytes)
            named = body.get("templateName")
            device = context.device_callers().caller(
                chain, template=named if isinstance(named, str) else None
            )
            self.caller = device
            data = checked.load(_request_schema(settings, True), body)
            template = device.identity.template
            parameters = device.identity.parameters_with(data["parameters"])
        key = request.headers.get("Idempotency-Key")
        return ProvisionRequest(
            arrival=self.arrival,
            caller=self.caller,
            template=template,
            parameters=parameters,
            csr=data["csr"],
            # "The same request" is the same JSON body, whatever its formatting or key order.
            idempotency=IdempotencyKey(key, Idempotency.digest(body)) if key is not None else None,
        )
