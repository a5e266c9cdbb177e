"""Successful JSON responses: never cached (a body may carry a private key)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response


def json_response(body: Any, status: int) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response
