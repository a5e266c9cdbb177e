"""GET /healthz (the process lives), GET /readyz (the pool can serve), GET /openapi.yaml."""

from __future__ import annotations

import importlib.resources

from flask import Blueprint, Response

from service.http import context
from service.http.responses import json_response

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"}, 200)


@blueprint.get("/readyz")
def readyz() -> Response:
    state = context.provisioner().readiness()
    return json_response(state, 200 if state.get("ready") else 503)


@blueprint.get("/openapi.yaml")
def openapi_document() -> Response:
    document = importlib.resources.files("service").joinpath("openapi.yaml").read_bytes()
    return Response(document, mimetype="application/yaml")
