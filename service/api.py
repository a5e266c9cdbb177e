"""The HTTP API, and the one place where errors become responses.

    POST /provision     run fleet provisioning for the caller (Bearer API key)
    GET  /healthz       the process lives
    GET  /readyz        200 while the MQTT pool can serve, else 503; JSON detail either way
    GET  /openapi.yaml  the contract (`service/openapi.yaml`, a byte-for-byte copy of the
                        repository's `openapi.yaml`, so that an installed package can serve it)

Status codes: 400 for a body that is not a JSON object; 422 for a JSON object that breaks a rule
(wrong type, unknown field, a bound, a CSR that is not one, a CSR required by policy).
Every response carries `X-Request-Id`; every problem body carries `requestId`.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import logging
import re
import time
import uuid
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed

from service import get_provisioner, get_settings
from service.auth import authenticate
from service.errors import (
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    Unauthorized,
    UnsupportedMediaType,
)
from service.schemas import (
    ProvisionRequestSchema,
    ProvisionResponseSchema,
    RequestLimits,
    json_type,
)
from service.settings import Settings

blueprint = Blueprint("api", __name__)
log = logging.getLogger(__name__)
access_log = logging.getLogger("service.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Schemas are built once (building one costs ~0.1 ms a request) and hold no per-call state.
_RESPONSE_SCHEMA = ProvisionResponseSchema()


@functools.lru_cache(maxsize=8)
def _request_schema(settings: Settings) -> ProvisionRequestSchema:
    return ProvisionRequestSchema(limits=RequestLimits.from_settings(settings))


@blueprint.post("/provision")
def provision() -> Response:
    settings = get_settings()
    authenticate(request.headers.get("Authorization"), settings.api_keys)
    body = _read_json_object(settings.max_body_bytes)
    try:
        data = _request_schema(settings).load(body)
    except ValidationError as error:
        raise _rules_broken(error.messages_dict) from None
    if data["csr"] is None and not settings.allow_server_generated_keys:
        raise _rules_broken({"csr": ["required: this service does not create private keys, "
                                     "send a certificate signing request"]})
    result = get_provisioner().provision(template_name=data["template_name"],
                                         parameters=data["parameters"], csr=data["csr"],
                                         request_id=request_id())
    return _json(_RESPONSE_SCHEMA.dump(result), 201)


@blueprint.get("/healthz")
def healthz() -> Response:
    return _json({"status": "ok"}, 200)


@blueprint.get("/readyz")
def readyz() -> Response:
    state = get_provisioner().readiness()
    return _json(state, 200 if state.get("ready") else 503)


@blueprint.get("/openapi.yaml")
def openapi_document() -> Response:
    document = importlib.resources.files("service").joinpath("openapi.yaml").read_bytes()
    return Response(document, mimetype="application/yaml")


def request_id() -> str:
    """The caller's `X-Request-Id` when it is safe to echo and log, else a fresh one."""
    if "request_id" not in g:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    return str(g.request_id)


@blueprint.before_app_request
def _start_request() -> None:
    g.started = time.monotonic()
    request_id()


@blueprint.after_app_request
def _finish_request(response: Response) -> Response:
    response.headers["X-Request-Id"] = request_id()
    elapsed_ms = (time.monotonic() - g.get("started", time.monotonic())) * 1000
    # Method, path, status, time and id only: never headers, body, keys or tokens.
    access_log.info("%s %s %s %.1fms request_id=%s", request.method, _printable(request.path),
                    response.status_code, elapsed_ms, request_id())
    return response


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ServiceError, render_problem)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)


def render_problem(error: ServiceError) -> Response:
    """The only place a ServiceError becomes a response (RFC 9457 problem+json)."""
    body = {**error.problem(), "requestId": request_id()}
    response = Response(json.dumps(body), status=error.status,
                        mimetype="application/problem+json")
    response.headers["Cache-Control"] = "no-store"
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="iot-provisioner"'
    if error.status >= 500:
        log.warning("%s %s answered %s: %s (step %s, request_id=%s)", request.method,
                    _printable(request.path), error.status, error.detail, error.step,
                    request_id())
    return response


def _render_http_exception(error: HTTPException) -> Response:
    # Routing and size errors that werkzeug raises before or around our views.
    code = error.code or 500
    problem: ServiceError
    if code == 404:
        problem = NotFound("No such resource; the API serves POST /provision, GET /healthz, "
                           "GET /readyz and GET /openapi.yaml.")
    elif code == 405:
        problem = MethodNotAllowed(f"{request.method} is not allowed on this resource.")
    elif code == 413:
        problem = _too_large(get_settings().max_body_bytes)
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
    log.error("unexpected error in %s %s (request_id=%s)", request.method,
              _printable(request.path), request_id(), exc_info=error)
    return render_problem(ServiceError("The service failed unexpectedly; the error is logged "
                                       "under this request id."))


def _read_json_object(max_bytes: int) -> dict[str, Any]:
    if request.mimetype != "application/json":
        got = request.mimetype or "no Content-Type"
        raise UnsupportedMediaType(f"Send the body as application/json, got {got}.")
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    # A chunked body has no Content-Length: werkzeug stops reading it at MAX_CONTENT_LENGTH,
    # which create_app sets one byte above the limit so that reading that byte means too large.
    raw = request.get_data(cache=False)
    if len(raw) > max_bytes:
        raise _too_large(max_bytes)
    try:
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=_object_without_duplicates,
                          parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"body is not valid JSON: {error.msg}: line {error.lineno} "
                           f"column {error.colno}") from None
    except UnicodeDecodeError as error:
        raise InvalidInput(f"body is not valid JSON: not UTF-8 at byte {error.start}") from None
    except ValueError as error:  # from the two hooks above
        raise InvalidInput(f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidInput("body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidInput(f"body must be a JSON object, got {json_type(body)}")
    return body


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two values for one key would let two parsers read two different requests.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _rules_broken(errors: dict[str, Any]) -> InvalidInput:
    flat = _flatten(errors)
    summary = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in flat.items())
    return InvalidInput(f"The request breaks {len(flat)} rule(s): {summary}", errors=flat,
                        status=422)


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


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The body is larger than {max_bytes} bytes.")


def _json(body: Any, status: int) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _printable(text: str, limit: int = 200) -> str:
    # Paths are the caller's text: keep control characters out of the log lines.
    cleaned = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")
