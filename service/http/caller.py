"""GET /caller: who the presented API key is (its id, role and scope), never its secret.

The operator page asks this once at sign-in to know which views and templates to offer.
"""

from __future__ import annotations

from flask import Blueprint, Response

from service.http import auth
from service.http.responses import json_response

blueprint = Blueprint("caller", __name__)


@blueprint.get("/caller")
def describe_caller() -> Response:
    found = auth.caller()
    return json_response({"keyId": found.key_id, "role": found.role, "scope": found.scope.to_json()}, 200)
