"""Routing, request ids, the one problem renderer, and the provisioner made on first use."""

from __future__ import annotations

import logging
import re

import pytest
from http_checks import (
    assert_never_reached_the_provisioner,
    problem_of,
    provision,
)

from service.errors import ServiceError


@pytest.mark.parametrize("path", ["/", "/provision/extra", "/nope", "/openapi.json"])
def test_unknown_route_is_404_problem(api, path):
    body = problem_of(api.get(path), 404)
    assert body["type"].endswith("/not-found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/provision", "POST"),
        ("PUT", "/provision", "POST"),
        ("DELETE", "/healthz", "GET"),
        ("POST", "/readyz", "GET"),
        ("POST", "/openapi.yaml", "GET"),
    ],
)
def test_wrong_method_is_405_problem_with_allow(api, method, path, allowed):
    response = api.request(method, path)
    body = problem_of(response, 405)
    assert allowed in response.headers["Allow"]
    assert method in body["detail"]
    assert_never_reached_the_provisioner(api)


# --- reaching the provisioner ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("incoming", "echoed"),
    [
        ("abc-123_X.y", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("has space", False),
        ("new\\line", False),
        ("", False),
        (None, False),
    ],
)
def test_request_id_is_echoed_only_when_safe(api, incoming, echoed):
    headers = {"X-Request-Id": incoming} if incoming is not None else {}
    for response in (api.get("/healthz", headers=headers), provision(api, key=None, headers=headers)):
        request_id = response.headers["X-Request-Id"]
        if echoed:
            assert request_id == incoming
        else:
            assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert response.json()["requestId"] == request_id


# --- AWS-side errors, produced by the emulator, rendered as problems ------------------------


def test_unexpected_exception_is_a_500_problem_without_details(serve_raising, caplog):
    api = serve_raising(KeyError("secret-internal-detail"))
    response = provision(api)
    body = problem_of(response, 500)
    assert "secret-internal-detail" not in response.text
    assert "Traceback" not in response.text
    assert body["type"].endswith("/internal-error")
    [record] = [r for r in caplog.records if r.exc_info]
    assert body["requestId"] in record.getMessage()
    assert "secret-internal-detail" in (record.exc_text or "")


# --- the access log and the real provisioner's life -----------------------------------------


def test_access_log_has_one_line_per_request(api, caplog):
    caplog.set_level(logging.INFO, logger="service.access")
    api.get("/healthz", headers={"X-Request-Id": "probe-1"})
    provision(api, key=None, headers={"X-Request-Id": "probe-2"})
    lines = [r.getMessage() for r in caplog.records if r.name == "service.access"]
    assert len(lines) == 2
    assert re.fullmatch(r"GET /healthz 200 \d+\.\dms request_id=probe-1", lines[0])
    assert re.fullmatch(r"POST /provision 401 \d+\.\dms request_id=probe-2", lines[1])


def test_provisioner_is_made_on_first_use_and_kept(api):
    holder = api.app.extensions["provisioner"]
    assert holder.current is None  # nothing owns a thread or socket before a request needs it
    api.get("/readyz")
    made = holder.current
    assert made is not None
    api.get("/readyz")
    assert holder.current is made


def test_valid_request_reaching_the_real_provisioner_is_503_with_retry_after_and_step(api):
    # The app made the real provisioner, whose broker (port 1) is unreachable.
    response = provision(api, {"templateName": "demo", "parameters": {"SerialNumber": "1"}})
    body = problem_of(response, 503)
    assert body["type"].endswith("/broker-unavailable")
    assert body["step"] == "connect"
    assert body["detail"].startswith("no connection to AWS IoT is ready")
    assert int(response.headers["Retry-After"]) >= 1
    assert api.get("/readyz").status_code == 503


# --- more bugs, through the same stand-in --------------------------------------------------


def test_a_provisioner_given_to_create_app_is_the_one_used(serve_raising):
    api = serve_raising(KeyError("from the given provisioner"))
    assert api.app.extensions["provisioner"].current is api.provisioner
    problem_of(provision(api), 500)


def test_service_error_base_class_renders_as_500(serve_raising):
    api = serve_raising(ServiceError("broken invariant"))
    assert problem_of(provision(api), 500)["detail"] == "broken invariant"
