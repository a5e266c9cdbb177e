"""Bearer keys at the HTTP layer: 401s, configured keys, keys never logged."""

from __future__ import annotations

import base64
import logging

import pytest
from http_checks import (
    assert_never_reached_the_provisioner,
    assert_provisioned,
    device,
    fleet_certificates,
    problem_of,
    provision,
)


def test_missing_api_key_is_401_with_www_authenticate(api):
    response = provision(api, key=None)
    body = problem_of(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in body["detail"]
    assert_never_reached_the_provisioner(api)


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong-key-0123456789abcdef",
        "Bearer {key}x",
        "Bearer {key_but_last}",
        "Basic {key_base64}",
        "{key}",
        "Bearer ",
        "Bearer {key} {key}",
    ],
)
def test_wrong_api_key_is_401(api, authorization):
    key = api.key
    authorization = authorization.format(
        key=key, key_but_last=key[:-1], key_base64=base64.b64encode(key.encode()).decode()
    )
    response = provision(api, headers={"Authorization": authorization})
    problem_of(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_never_reached_the_provisioner(api)


def test_any_configured_api_key_is_accepted(emulator, start_service):
    second = "second-key-0123456789abcdef"
    first = "first-key-0123456789abcdef"
    api = start_service(PROVISIONER_API_KEYS=f" {first}, ,{second} ,")
    assert_provisioned(emulator, provision(api, device("KEY-2"), key=second), "demo-KEY-2")
    assert_provisioned(emulator, provision(api, device("KEY-1"), key=first), "demo-KEY-1")
    problem_of(provision(api, device("KEY-3"), key=f"{first},{second}"), 401)
    assert emulator.registry.describe_thing("demo-KEY-3") is None
    assert len(fleet_certificates(emulator)) == 2


def test_api_keys_never_reach_the_log(api, live_api, serve_raising, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-key-fedcba9876543210"
    assert provision(api, key=wrong).status_code == 401
    assert provision(api).status_code == 503  # reaches the real provisioner: broker unreachable
    assert provision(api, {"templateName": 5}).status_code == 422
    assert provision(live_api, device("LOG-1")).status_code == 201  # the whole real flow
    assert provision(serve_raising(RuntimeError("bug"))).status_code == 500  # with traceback
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    for status in (401, 503, 422, 201, 500):
        assert f"POST /provision {status}" in logged
    assert api.key not in logged and wrong not in logged
    assert "Authorization" not in logged and "Bearer" not in logged


# --- the body: media type, size, JSON -------------------------------------------------------
