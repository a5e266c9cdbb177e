"""GET /healthz (the process lives), GET /readyz (the pool and the store can serve), GET /openapi.yaml.

/readyz answers anyone whether the service is ready: a ready connection in the pool and, when the
service has a store, the store reachable and at this code's schema. Only an admin credential gets
the detail: the pool's client IDs (host, pid and slot of every connection), last errors, and the
store's backend and schema revision.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

from flask import Blueprint, Response

from service.errors import ServiceError
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
    kept = _store_readiness()
    if kept is not None:
        ready = ready and bool(kept.get("ready"))
        state = {**state, "ready": ready, "store": kept}
    if not auth.is_admin():
        state = {"ready": ready}
    return json_response(state, 200 if ready else 503)


def _store_readiness() -> dict[str, Any] | None:
    """The store's state; None when the service runs without one (nothing to wait for)."""
    try:
        store = context.store()  # opens it (and migrates) on first use in this process
    except ServiceError as error:
        return {"ready": False, "error": error.detail}
    return None if store.off else store.describe()


@blueprint.get("/openapi.yaml")
def openapi_document() -> Response:
    document = importlib.resources.files("service").joinpath("openapi.yaml").read_bytes()
    return Response(document, mimetype="application/yaml")
