"""GET /healthz, /readyz and /openapi.yaml, and the contract itself."""

from __future__ import annotations

import pytest
import requests
import yaml
from openapi_spec_validator import validate as validate_spec
from repository import CONTRACT_PATH, REPO_ROOT


def test_healthz_answers_ok(api):
    response = api.get("/healthz", key=None)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_503_with_the_pool_detail_while_not_ready(api):
    # The real provisioner, its broker a closed port: no connection can become ready.
    response = api.get("/readyz")  # with an admin key: the detail
    assert response.status_code == 503
    detail = response.json()
    assert detail["ready"] is False and detail["readyConnections"] == 0
    assert detail["size"] == api.settings.pool_size == len(detail["connections"])
    assert {c["state"] for c in detail["connections"]} == {"connecting"}


def test_readyz_is_200_while_ready(live_api):
    response = live_api.get("/readyz")
    assert response.status_code == 200
    detail = response.json()
    assert detail["ready"] is True and detail["readyConnections"] >= 1
    assert any(c["state"] == "ready" for c in detail["connections"])


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789abcdef"], ids=["no key", "wrong key"])
def test_readyz_without_an_admin_key_says_only_whether_ready(live_api, api, key):
    # Client IDs name the host, pid and slot of every connection; errors may name internals.
    assert live_api.get("/readyz", key=key).json() == {"ready": True}
    response = api.get("/readyz", key=key)
    assert response.status_code == 503 and response.json() == {"ready": False}
    assert api.get("/readyz").json()["connections"]  # the admin key still gets the detail


def test_openapi_yaml_is_served_as_the_contract(api):
    response = api.get("/openapi.yaml", key=None)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/yaml"
    assert response.content == CONTRACT_PATH.read_bytes()


def test_repository_openapi_is_the_packaged_contract():
    # One contract: the root file is a symlink to the package's copy.
    assert (REPO_ROOT / "openapi.yaml").resolve() == CONTRACT_PATH.resolve()


def test_contract_is_a_valid_openapi_3_1_document():
    document = yaml.safe_load(CONTRACT_PATH.read_text())
    assert document["openapi"].startswith("3.1")
    validate_spec(document)


def test_contract_check_rejects_a_response_the_contract_does_not_allow(api, contract_check):
    response = requests.get(api.base_url + "/healthz", timeout=10)
    contract_check(response)
    response._content = b'{"status": "sleeping"}'
    with pytest.raises(AssertionError, match="GET /healthz -> 200 breaks openapi.yaml"):
        contract_check(response)
    del response.headers["X-Request-Id"]
    with pytest.raises(AssertionError, match="X-Request-Id"):
        contract_check(response)
    missing = requests.get(api.base_url + "/nope", timeout=10)
    contract_check(missing)
    missing.headers["Content-Type"] = "text/html"
    with pytest.raises(AssertionError, match="content type 'text/html' is not documented"):
        contract_check(missing)


# --- authentication -------------------------------------------------------------------------
