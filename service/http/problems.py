"""The one place where errors become responses: RFC 9457 problem+json for every failure."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed

from service.errors import (
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    ServiceError,
    Unauthorized,
    UnsupportedMediaType,
)
from service.http import context
from service.http.body import too_large
from service.http.request_log import printable, request_id

log = logging.getLogger("service.http")


def init_app(app: Flask) -> None:
    app.register_error_handler(ServiceError, render_problem)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)


def render_problem(error: ServiceError) -> Response:
    body = {**error.problem(), "requestId": request_id()}
    response = Response(json.dumps(body), status=error.status, mimetype="application/problem+json")
    response.headers["Cache-Control"] = "no-store"
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="iot-provisioner"'
    if error.status >= 500:
        log.warning(
            "%s %s answered %s: %s (step %s, request_id=%s)",
            request.method,
            printable(request.path),
            error.status,
            error.detail,
            error.step,
            request_id(),
        )
    return response


def rules_broken(errors: dict[str, Any]) -> InvalidInput:
    """A 422 naming every broken rule, from marshmallow's (possibly nested) error dict."""
    return InvalidInput.broken_rules(_flatten(errors))


def _flatten(errors: dict[str, Any], prefix: str = "") -> dict[str, list[str]]:
    # marshmallow nests errors for nested fields; the contract promises {field: [sentences]}.
    flat: dict[str, list[str]] = {}
    for key, value in errors.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = [str(m) for m in (value if isinstance(value, list) else [value])]
    return flat


def _render_http_exception(error: HTTPException) -> Response:
    # Routing and size errors that werkzeug raises before or around our views.
    code = error.code or 500
    problem: ServiceError
    if code == 404:
        problem = NotFound(
            "No such resource; the API serves POST /provision, GET /healthz, "
            "GET /readyz, GET /metrics and GET /openapi.yaml."
        )
    elif code == 405:
        problem = MethodNotAllowed(f"{request.method} is not allowed on this resource.")
    elif code == 413:
        # The limit of this route (http.body.read_body), else the app's.
        limit = request.max_content_length
        problem = too_large(limit - 1 if limit else context.settings().max_body_bytes)
    elif code == 415:
        problem = UnsupportedMediaType(error.description or "Unsupported media type.")
    elif code < 500:
        problem = InvalidInput(error.description or error.name, status=code)
    else:
        problem = ServiceError(error.description or error.name)
        problem.status = code
    response = render_problem(problem)
    if isinstance(error, WerkzeugMethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _render_unexpected(error: Exception) -> Response:
    # A bug: the traceback goes to the log, the caller gets a plain 500 problem and the id.
    log.error(
        "unexpected error in %s %s (request_id=%s)",
        request.method,
        printable(request.path),
        request_id(),
        exc_info=error,
    )
    return render_problem(
        ServiceError("The service failed unexpectedly; the error is logged under this request id.")
    )
