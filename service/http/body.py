"""Reading a request body: application/json, bounded, one JSON object with no duplicate keys and
no text the store cannot keep (service.http.text)."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, after_this_request, request
from werkzeug.exceptions import ClientDisconnected

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.text import refuse_unusable


def read_json_object(max_bytes: int) -> dict[str, Any]:
    if request.mimetype != "application/json":
        got = request.mimetype or "no Content-Type"
        raise UnsupportedMediaType(f"Send the body as application/json, got {got}.")
    raw = read_body(max_bytes)
    try:
        body = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as error:
        # Also what a Content-Length shorter than the body looks like: the rest of the body would
        # be read as the next request, so the connection is closed after the answer.
        close_connection_after_response()
        raise InvalidInput(
            f"body is not valid JSON: {error.msg}: line {error.lineno} column {error.colno}"
        ) from None
    except UnicodeDecodeError as error:
        raise InvalidInput(f"body is not valid JSON: not UTF-8 at byte {error.start}") from None
    except ValueError as error:  # from the two hooks above
        raise InvalidInput(f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidInput("body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidInput(f"body must be a JSON object, got {json_type(body)}")
    refuse_unusable(body)
    return body


def read_body(max_bytes: int) -> bytes:
    """The whole body, at most `max_bytes` (413 past it), framed as its headers say (400 if not)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large(max_bytes)
    # A chunked body has no Content-Length: werkzeug stops reading it at max_content_length, one
    # byte above the limit so that reading that byte means too large (http.problems says which
    # limit). The app's is PROVISIONER_MAX_BODY_BYTES; a route with a larger body sets its own.
    request.max_content_length = max_bytes + 1
    try:
        raw = request.get_data(cache=False)
    except (OSError, ValueError, ClientDisconnected):
        # A malformed chunked body (werkzeug's server raises OSError, gunicorn's is turned into
        # one by http.framing) or a body cut short.
        raise unframed(
            "the body could not be read as sent (malformed chunked encoding, or cut short)"
        ) from None
    if len(raw) > max_bytes:
        raise too_large(max_bytes)
    if request.content_length is not None and len(raw) != request.content_length:
        raise unframed(f"the body has {len(raw)} bytes, its Content-Length says {request.content_length}")
    return raw


def unframed(detail: str) -> InvalidInput:
    """A 400 for a body that cannot be framed, after which the connection is closed: its next
    byte cannot be trusted to start a request (http.framing)."""
    close_connection_after_response()
    return InvalidInput(f"Malformed request body: {detail}.")


def close_connection_after_response() -> None:
    @after_this_request
    def close_connection(response: Response) -> Response:
        response.headers["Connection"] = "close"
        return response


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The body is larger than {max_bytes} bytes.")


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else type(value).__name__


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
