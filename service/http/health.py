"""GET /healthz (the process lives), GET /readyz (the pool can serve), GET /openapi.yaml.

/readyz answers anyone whether the service is ready; only an admin credential gets the pool's
detail, whose client IDs name the host, pid and slot of every connection, and its last errors.
"""

from __future__ import annotations

import importlib.resources

from flask import Blueprint, Response, request

from service.http import auth, context
from service.http.responses import json_response

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"}, 200)


@blueprint.get("/readyz")
def readyz() -> Response:
    state = context.provisioner().readiness()
    ready = bool(state.get("ready"))
    if not auth.is_admin(request.headers.get("Authorization"), context.settings()):
        state = {"ready": ready}
    return json_response(state, 200 if ready else 503)


@blueprint.get("/openapi.yaml")
def openapi_document() -> Response:
    document = importlib.resources.files("service").joinpath("openapi.yaml").read_bytes()
    return Response(document, mimetype="application/yaml")
