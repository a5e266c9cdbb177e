"""Request ids, the access log and the HTTP duration metric: one line and one observation per
request, never headers, bodies, keys or tokens. Each request gets a fresh log context
(`service.logs`) holding its id, so every line logged while it runs can carry it."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from service import logs, metrics

access_log = logging.getLogger("service.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id() -> str:
    """The caller's `X-Request-Id` when it is safe to echo and log, else a fresh one."""
    if "request_id" not in g:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    return str(g.request_id)


# An API key pasted into a path (GET /admin/keys/<whole key>) keeps its id, loses its secret.
_API_KEY_SECRET = re.compile(r"(iotp_k[0-9a-f]{12}_)[A-Za-z0-9_-]+")


def printable(text: str, limit: int = 200) -> str:
    """The caller's text made safe for a log line: no secret, no control characters, bounded."""
    text = _API_KEY_SECRET.sub(r"\1<redacted>", text)
    cleaned = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


def init_app(app: Flask) -> None:
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.teardown_request(_end_request)


def _start_request() -> None:
    g.started = time.monotonic()
    logs.start(request_id=request_id())


def _finish_request(response: Response) -> Response:
    response.headers["X-Request-Id"] = request_id()
    elapsed = time.monotonic() - g.get("started", time.monotonic())
    # The URL rule (/admin/keys/<key_id>), never the path: a path may hold anything.
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    method = request.method if request.method in metrics.HTTP_METHODS else "_OTHER"
    metrics.http_request_duration.labels(route, method, str(response.status_code)).observe(elapsed)
    access_log.info(
        "%s %s %s %.1fms request_id=%s",
        request.method,
        printable(request.path),
        response.status_code,
        elapsed * 1000,
        request_id(),
        extra={"status": response.status_code, "duration_ms": elapsed * 1000},
    )
    return response


def _end_request(error: BaseException | None) -> None:
    logs.clear()
