"""POST /provision: run fleet provisioning for the caller (Bearer API key).

Status codes: 400 for a body that is not a JSON object; 422 for a JSON object that breaks a rule
(wrong type, unknown field, a bound, a CSR that is not one, a CSR required by policy).
"""

from __future__ import annotations

import functools

from flask import Blueprint, Response, request
from marshmallow import ValidationError

from service.config import Settings
from service.http import context
from service.http.auth import authenticate
from service.http.body import read_json_object
from service.http.problems import rules_broken
from service.http.request_log import request_id
from service.http.responses import json_response
from service.http.schemas import ProvisionRequestSchema, ProvisionResponseSchema, RequestLimits

blueprint = Blueprint("provision", __name__)

# Schemas are built once (building one costs ~0.1 ms a request) and hold no per-call state.
_RESPONSE_SCHEMA = ProvisionResponseSchema()


@functools.lru_cache(maxsize=8)
def _request_schema(settings: Settings) -> ProvisionRequestSchema:
    return ProvisionRequestSchema(limits=RequestLimits.from_settings(settings))


@blueprint.post("/provision")
def provision() -> Response:
    settings = context.settings()
    authenticate(request.headers.get("Authorization"), settings.api_keys)
    body = read_json_object(settings.max_body_bytes)
    try:
        data = _request_schema(settings).load(body)
    except ValidationError as error:
        raise rules_broken(error.messages_dict) from None
    if data["csr"] is None and not settings.allow_server_generated_keys:
        raise rules_broken(
            {
                "csr": [
                    "required: this service does not create private keys, send a certificate signing request"
                ]
            }
        )
    result = context.provisioner().provision(
        template_name=data["template_name"],
        parameters=data["parameters"],
        csr=data["csr"],
        request_id=request_id(),
    )
    return json_response(_RESPONSE_SCHEMA.dump(result), 201)
