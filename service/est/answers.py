"""What the EST door sends back: certificates as certs-only PKCS#7, refusals as text.

RFC 7030 lets a server answer any 4xx or 5xx with a human-readable body; this door's is
`text/plain`, the service's own sentence (the same `detail` the JSON door puts in problem+json)
and the request id. Two kinds of error are renamed for EST clients, which retry only what RFC 7030
tells them to retry:

    202 + Retry-After   the same request, or another for the same device, is being provisioned
                        right now: RFC 7030's "pending, ask again with the same request"
    503 + Retry-After   the caller's rate, the service's pace at AWS, AWS's throttling (429 on the
                        JSON door), and every 503 of the service (no free connection, AWS IoT or
                        the store unreachable)

Everything else keeps the service's status. libest's client knows only a few statuses (200, 202,
204, 400, 401, 404, 423, 500, 502, 504) and reports any other as an unhandled response, which it
also is for the EST client: a refusal (docs/est.md lists them).
"""

from __future__ import annotations

import logging

from cryptography import x509
from flask import Response, g, request

from service.errors import (
    AlreadyProvisioned,
    IdempotencyConflict,
    PaceExceeded,
    RateLimited,
    ServiceError,
    Throttled,
    Unauthorized,
)
from service.est import codec

log = logging.getLogger("service.est")

REALM = "iot-provisioner EST"
# libest reads only the first WWW-Authenticate header, and sends credentials only after a 401
# naming its scheme: Basic first (a factory tool's user and API key), Bearer for the others.
CHALLENGES = (f'Basic realm="{REALM}"', f'Bearer realm="{REALM}"')
_THROTTLED = (RateLimited, PaceExceeded, Throttled)


def certificates(found: list[x509.Certificate], content_type: str, *, replayed: bool = False) -> Response:
    response = Response(codec.certs_only(found), status=200, content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def csr_attributes(body: bytes) -> Response:
    if not body:
        return Response(status=204)
    response = Response(body, status=200, content_type=codec.CSRATTRS)
    response.headers["Cache-Control"] = "no-store"
    return response


def refusal(error: ServiceError) -> Response:
    """An error as an EST client reads it: a status it knows, a sentence, Retry-After."""
    status = error.status
    retry_after = error.retry_after
    if isinstance(error, IdempotencyConflict) or (
        isinstance(error, AlreadyProvisioned) and error.extra.get("inProgress")
    ):
        status = 202
    elif isinstance(error, _THROTTLED):
        status = 503
    if status == 503 and retry_after is None:
        retry_after = 5
    lines = [f"{error.title}: {error.detail}"]
    if isinstance(error, IdempotencyConflict):
        # The door made the Idempotency-Key (est.enrollment); the client knows none.
        lines = ["Pending: the same request (this CSR, from this caller) is still being enrolled."]
    if status == 202:
        lines.append("Send the same request again after Retry-After seconds.")
    lines.append(f"Request id: {request_id()}")
    response = Response("\n".join(lines) + "\n", status=status, content_type="text/plain; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if isinstance(error, Unauthorized):
        for challenge in CHALLENGES:
            response.headers.add("WWW-Authenticate", challenge)
    if status >= 500:
        log.warning(
            "%s %s answered %s: %s (step %s, request_id=%s)",
            request.method,
            "".join(c if c.isprintable() else "?" for c in request.path[:200]),
            status,
            error.detail,
            error.step,
            request_id(),
        )
    return response


def request_id() -> str:
    """This request's id (X-Request-Id), for the audit record and the answer."""
    # The app's request log gave this request its id before any view ran (service.http.request_log).
    return str(g.get("request_id", "-"))
