"""The HTTP layer over a real socket; every response is checked against openapi.yaml by `api`."""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from openapi_spec_validator import validate as validate_spec

from service.errors import (
    BrokerUnavailable,
    PoolExhausted,
    ProvisioningRejected,
    ServiceError,
    Throttled,
    UpstreamInvalid,
    UpstreamTimeout,
)
from service.provisioner import ProvisionResult

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACT_PATH = REPO_ROOT / "openapi.yaml"
CERT_ID = "a" * 64
RESULT = ProvisionResult(thing_name="demo-SN1", certificate_id=CERT_ID,
                         certificate_pem="-----BEGIN CERTIFICATE-----\n...",
                         private_key="-----BEGIN RSA PRIVATE KEY-----\n...",
                         device_configuration={"fleet": "blue"})


def problem_of(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["requestId"] == response.headers["X-Request-Id"]
    return body


def provision(api: Any, body: Any = None, **kwargs: Any) -> requests.Response:
    if body is None:
        body = {"templateName": "demo"}
    return api.post("/provision", json=body, **kwargs)


# --- operations endpoints -------------------------------------------------------------------

def test_healthz_answers_ok(api):
    response = api.get("/healthz", key=None)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_503_with_the_pool_detail_while_not_ready(api):
    api.provisioner.ready = {"ready": False, "connections": [{"state": "connecting"}]}
    response = api.get("/readyz", key=None)
    assert response.status_code == 503
    assert response.json() == api.provisioner.ready


def test_readyz_is_200_while_ready(api):
    api.provisioner.ready = {"ready": True, "connections": [{"state": "subscribed"}]}
    response = api.get("/readyz", key=None)
    assert response.status_code == 200
    assert response.json()["ready"] is True


def test_openapi_yaml_is_served_as_the_contract(api):
    response = api.get("/openapi.yaml", key=None)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/yaml"
    assert response.content == CONTRACT_PATH.read_bytes()


def test_packaged_openapi_copy_is_byte_identical_to_the_contract():
    # The root file is the source; run `cp openapi.yaml service/openapi.yaml` after editing it.
    assert (REPO_ROOT / "service" / "openapi.yaml").read_bytes() == CONTRACT_PATH.read_bytes()


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

def test_missing_api_key_is_401_with_www_authenticate(api):
    response = provision(api, key=None)
    body = problem_of(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Bearer" in body["detail"]
    assert api.provisioner.calls == []


@pytest.mark.parametrize("authorization", [
    "Bearer wrong-key-0123456789abcdef",
    "Bearer {key}x",
    "Bearer {key_but_last}",
    "Basic {key_base64}",
    "{key}",
    "Bearer ",
    "Bearer {key} {key}",
])
def test_wrong_api_key_is_401(api, authorization):
    key = api.key
    authorization = authorization.format(key=key, key_but_last=key[:-1],
                                         key_base64=base64.b64encode(key.encode()).decode())
    response = provision(api, headers={"Authorization": authorization})
    problem_of(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.provisioner.calls == []


def test_any_configured_api_key_is_accepted(serve, make_settings, scripted):
    second = "second-key-0123456789abcdef"
    first = "first-key-0123456789abcdef"
    api = serve(make_settings(PROVISIONER_API_KEYS=f" {first}, ,{second} ,"), scripted)
    scripted.outcome = RESULT
    assert provision(api, key=second).status_code == 201
    assert provision(api, key=first).status_code == 201
    assert provision(api, key=f"{first},{second}").status_code == 401


def test_api_keys_never_reach_the_log(api, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-key-fedcba9876543210"
    api.provisioner.outcome = BrokerUnavailable("broker down", step="connect", retry_after=1)
    provision(api, key=wrong)
    provision(api)  # reaches the provisioner: 503
    provision(api, {"templateName": 5})  # 422
    api.provisioner.outcome = RuntimeError("bug")
    provision(api)  # 500, logged with its traceback
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "POST /provision 401" in logged and "POST /provision 500" in logged
    assert api.key not in logged and wrong not in logged
    assert "Authorization" not in logged and "Bearer" not in logged


# --- the body: media type, size, JSON -------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          None])
def test_wrong_content_type_is_415(api, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.post("/provision", data=b'{"templateName": "demo"}', headers=headers)
    body = problem_of(response, 415)
    assert "application/json" in body["detail"]


def test_content_type_with_charset_is_accepted(api):
    api.provisioner.outcome = RESULT
    response = api.post("/provision", data=b'{"templateName": "demo"}',
                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 201


def test_oversized_body_is_413(api):
    body = b'{"templateName": "demo", "parameters": {"a": "' + b"x" * 70000 + b'"}}'
    response = api.post("/provision", data=body, headers={"Content-Type": "application/json"})
    assert "65536" in problem_of(response, 413)["detail"]
    assert api.provisioner.calls == []


def test_oversized_chunked_body_is_413(api):
    # No Content-Length: the limit must hold while the body streams in.
    chunks = iter([b'{"templateName": "demo", "parameters": {"a": "'] + [b"x" * 8192] * 10
                  + [b'"}}'])
    response = api.post("/provision", data=chunks, headers={"Content-Type": "application/json"})
    problem_of(response, 413)
    assert api.provisioner.calls == []


def test_body_limit_comes_from_settings(serve, make_settings, scripted):
    api = serve(make_settings(PROVISIONER_MAX_BODY_BYTES="1024"), scripted)
    response = provision(api, {"templateName": "demo", "parameters": {"a": "x" * 1100}})
    assert "1024" in problem_of(response, 413)["detail"]


@pytest.mark.parametrize(("raw", "detail"), [
    (b'{"templateName": "demo"', "Expecting ',' delimiter: line 1 column 24"),
    (b"", "line 1 column 1"),
    (b"{'templateName': 'demo'}", "line 1 column 2"),
    (b'{"templateName": "demo",\n "parameters": {,}}', "line 2 column 17"),
    (b'{"templateName": "demo", "templateName": "other"}', "duplicate key 'templateName'"),
    (b'{"templateName": "demo", "parameters": {"a": NaN}}', "NaN is not a JSON value"),
    (b'{"templateName": "d\xffmo"}', "not UTF-8 at byte 19"),
    (b"[" * 60000 + b"]" * 60000, "nested too deeply"),
])
def test_malformed_json_is_400_naming_the_position(serve, make_settings, scripted, raw, detail):
    api = serve(make_settings(PROVISIONER_MAX_BODY_BYTES="131072"), scripted)
    response = api.post("/provision", data=raw, headers={"Content-Type": "application/json"})
    body = problem_of(response, 400)
    assert body["detail"].startswith("body is not valid JSON: ")
    assert detail in body["detail"]
    assert "errors" not in body


@pytest.mark.parametrize(("value", "kind"), [([], "array"), ("demo", "string"), (5, "number"),
                                             (None, "null"), (True, "boolean")])
def test_json_that_is_not_an_object_is_400(api, value, kind):
    response = api.post("/provision", data=json.dumps(value),
                        headers={"Content-Type": "application/json"})
    assert problem_of(response, 400)["detail"] == f"body must be a JSON object, got {kind}"


# --- the rules: 422 naming the field --------------------------------------------------------

@pytest.mark.parametrize(("body", "field", "message"), [
    ({"templateName": 5}, "templateName", "Not a valid string."),
    ({"templateName": None}, "templateName", "Field may not be null."),
    ({}, "templateName", "Missing data for required field."),
    ({"templateName": "demo", "parameters": []}, "parameters", "Not a valid mapping type."),
    ({"templateName": "demo", "parameters": {"SerialNumber": 42}}, "parameters",
     "parameter 'SerialNumber' must be a string, got number"),
    ({"templateName": "demo", "parameters": {"SerialNumber": None}}, "parameters",
     "parameter 'SerialNumber' must be a string, got null"),
    ({"templateName": "demo", "csr": 7}, "csr", "Not a valid string."),
    ({"templateName": "demo", "csr": None}, "csr", "Field may not be null."),
])
def test_wrong_types_are_422_naming_the_field(api, body, field, message):
    problem = problem_of(provision(api, body), 422)
    assert problem["errors"] == {field: [message]}
    assert problem["detail"] == f"The request breaks 1 rule(s): {field}: {message}"
    assert api.provisioner.calls == []


def test_every_broken_rule_is_named_at_once(api):
    problem = problem_of(provision(api, {"templateName": "a b", "parameters": [], "csr": 1,
                                         "color": "red"}), 422)
    assert set(problem["errors"]) == {"templateName", "parameters", "csr", "color"}


def test_unknown_field_is_422_naming_it(api):
    problem = problem_of(provision(api, {"templateName": "demo", "templatename": "x"}), 422)
    assert problem["errors"] == {
        "templatename": ["unknown field (allowed: templateName, parameters, csr)"]}


@pytest.mark.parametrize("name", ["", "a b", "x" * 37, "demo/../x", "dëmo", "demo\n"])
def test_bad_template_name_is_422(api, name):
    problem = problem_of(provision(api, {"templateName": name}), 422)
    assert problem["errors"] == {"templateName": ["must be 1-36 characters of [0-9A-Za-z_-]"]}


def test_template_name_of_36_allowed_characters_is_accepted(api):
    api.provisioner.outcome = RESULT
    name = "Ab0_-" * 7 + "z"
    assert provision(api, {"templateName": name}).status_code == 201
    assert api.provisioner.calls[0]["template_name"] == name


def test_too_many_parameters_is_422(api):
    parameters = {f"p{i}": "v" for i in range(33)}
    problem = problem_of(provision(api, {"templateName": "demo", "parameters": parameters}), 422)
    assert problem["errors"] == {"parameters": ["at most 32 parameters are allowed, got 33"]}


@pytest.mark.parametrize(("parameters", "message"), [
    ({"k" * 129: "v"}, f"parameter name '{'k' * 40}...' is longer than 128 characters"),
    ({"serial": "v" * 2049}, "parameter 'serial' is longer than 2048 characters"),
    ({"": "v"}, "a parameter name must not be empty"),
])
def test_oversized_or_empty_parameter_key_or_value_is_422(api, parameters, message):
    problem = problem_of(provision(api, {"templateName": "demo", "parameters": parameters}), 422)
    assert problem["errors"] == {"parameters": [message]}


def test_parameter_bounds_at_the_limit_are_accepted(api):
    api.provisioner.outcome = RESULT
    parameters = {f"{i:02d}" + "k" * 126: "v" * 100 for i in range(32)}
    parameters["00" + "k" * 126] = "v" * 2048
    assert provision(api, {"templateName": "demo", "parameters": parameters}).status_code == 201
    assert api.provisioner.calls[0]["parameters"] == parameters


def test_parameter_bounds_come_from_settings(serve, make_settings, scripted):
    api = serve(make_settings(PROVISIONER_MAX_PARAMETERS="1",
                              PROVISIONER_MAX_PARAMETER_KEY_LENGTH="3",
                              PROVISIONER_MAX_PARAMETER_VALUE_LENGTH="4"), scripted)
    problem = problem_of(provision(api, {"templateName": "demo",
                                         "parameters": {"abcd": "12345", "b": "1"}}), 422)
    assert problem["errors"] == {"parameters": [
        "at most 1 parameters are allowed, got 2",
        "parameter name 'abcd' is longer than 3 characters",
        "parameter 'abcd' is longer than 4 characters"]}


def _tampered(csr_pem: str) -> str:
    der = bytearray(x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(
        serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature: the CSR still parses but no longer verifies
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize(("make", "message"), [
    (lambda csr: "hello", "not a valid PEM certificate signing request (no -----BEGIN "
                          "CERTIFICATE REQUEST-----)"),
    (lambda csr: csr.replace(csr.splitlines()[2], "", 1),
     "not a valid PEM certificate signing request"),
    (lambda csr: "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n"
                 "-----END CERTIFICATE REQUEST-----\n",
     "not a valid PEM certificate signing request"),
    (_tampered, "not a valid PEM certificate signing request (its signature does not match "
                "its public key)"),
    (lambda csr: csr + "x" * 16384, "longer than 16384 characters"),
])
def test_csr_that_is_not_a_csr_is_422(api, csr_pem, make, message):
    problem = problem_of(provision(api, {"templateName": "demo", "csr": make(csr_pem)}), 422)
    assert problem["errors"] == {"csr": [message]}
    assert problem["detail"] == f"The request breaks 1 rule(s): csr: {message}"
    assert api.provisioner.calls == []


def test_server_generated_keys_forbidden_requires_a_csr_422(serve, make_settings, scripted,
                                                            csr_pem):
    api = serve(make_settings(PROVISIONER_ALLOW_SERVER_KEYS="false"), scripted)
    problem = problem_of(provision(api, {"templateName": "demo"}), 422)
    assert list(problem["errors"]) == ["csr"]
    assert "send a certificate signing request" in problem["errors"]["csr"][0]
    assert scripted.calls == []
    scripted.outcome = ProvisionResult("t", CERT_ID, "pem", None, {})
    assert provision(api, {"templateName": "demo", "csr": csr_pem}).status_code == 201


# --- routing --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/provision/extra", "/nope", "/openapi.json"])
def test_unknown_route_is_404_problem(api, path):
    body = problem_of(api.get(path), 404)
    assert body["type"].endswith("/not-found")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/provision", "POST"), ("PUT", "/provision", "POST"),
    ("DELETE", "/healthz", "GET"), ("POST", "/readyz", "GET"), ("POST", "/openapi.yaml", "GET"),
])
def test_wrong_method_is_405_problem_with_allow(api, method, path, allowed):
    response = api.request(method, path)
    body = problem_of(response, 405)
    assert allowed in response.headers["Allow"]
    assert method in body["detail"]


# --- reaching the provisioner ---------------------------------------------------------------

def test_valid_request_reaches_the_provisioner_and_answers_201(api):
    api.provisioner.outcome = RESULT
    response = provision(api, {"templateName": "demo", "parameters": {"SerialNumber": "SN1"}},
                         headers={"X-Request-Id": "factory-7.run_3"})
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Request-Id"] == "factory-7.run_3"
    assert response.json() == {"thingName": "demo-SN1", "certificateId": CERT_ID,
                               "certificatePem": RESULT.certificate_pem,
                               "privateKey": RESULT.private_key,
                               "deviceConfiguration": {"fleet": "blue"}}
    assert api.provisioner.calls == [{"template_name": "demo",
                                      "parameters": {"SerialNumber": "SN1"}, "csr": None,
                                      "request_id": "factory-7.run_3"}]


def test_csr_flow_passes_the_csr_and_omits_private_key(api, csr_pem):
    api.provisioner.outcome = ProvisionResult("demo-SN1", CERT_ID, "pem", None, {})
    response = provision(api, {"templateName": "demo", "csr": csr_pem})
    assert response.status_code == 201
    assert "privateKey" not in response.json()
    assert api.provisioner.calls[0]["csr"] == csr_pem
    assert api.provisioner.calls[0]["parameters"] == {}


@pytest.mark.parametrize(("incoming", "echoed"), [
    ("abc-123_X.y", True), ("x" * 64, True), ("x" * 65, False), ("has space", False),
    ("new\\line", False), ("", False), (None, False),
])
def test_request_id_is_echoed_only_when_safe(api, incoming, echoed):
    headers = {"X-Request-Id": incoming} if incoming is not None else {}
    for response in (api.get("/healthz", headers=headers), provision(api, key=None,
                                                                      headers=headers)):
        request_id = response.headers["X-Request-Id"]
        if echoed:
            assert request_id == incoming
        else:
            assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert response.json()["requestId"] == request_id


@pytest.mark.parametrize(("error", "status", "fields"), [
    (BrokerUnavailable("cannot connect", step="connect", retry_after=2), 503,
     {"step": "connect"}),
    (PoolExhausted("all busy", retry_after=1), 503, {}),
    (UpstreamTimeout("no answer within 10 s", step="register"), 504, {"step": "register"}),
    (UpstreamInvalid("certificate does not match the CSR", step="create"), 502,
     {"step": "create"}),
    (ProvisioningRejected(step="register", status_code=404, error_code="NotFoundException",
                          error_message="no template"), 404,
     {"step": "register", "statusCode": 404, "errorCode": "NotFoundException"}),
    (ProvisioningRejected(step="register", status_code=403, error_code="ACCESS_DENIED",
                          error_message="hook denied"), 403,
     {"statusCode": 403, "errorCode": "ACCESS_DENIED", "errorMessage": "hook denied"}),
    (ProvisioningRejected(step="register", status_code=400, error_code="InvalidParameters",
                          error_message="missing SerialNumber"), 400,
     {"errorCode": "InvalidParameters"}),
    (ProvisioningRejected(step="create", status_code=500, error_code="InternalFailure",
                          error_message="oops"), 502, {"statusCode": 500}),
    (Throttled(step="create", status_code=429, error_code="ThrottlingException",
               error_message="slow down", retry_after=3), 429, {"statusCode": 429}),
])
def test_service_errors_render_as_problems(api, error, status, fields):
    api.provisioner.outcome = error
    response = provision(api)
    body = problem_of(response, status)
    assert body["detail"] == error.detail
    assert fields.items() <= body.items()
    if error.retry_after is not None:
        assert response.headers["Retry-After"] == str(error.retry_after)
    else:
        assert "Retry-After" not in response.headers


def test_unexpected_exception_is_a_500_problem_without_details(api, caplog):
    api.provisioner.outcome = KeyError("secret-internal-detail")
    response = provision(api)
    body = problem_of(response, 500)
    assert "secret-internal-detail" not in response.text
    assert "Traceback" not in response.text
    assert body["type"].endswith("/internal-error")
    [record] = [r for r in caplog.records if r.exc_info]
    assert body["requestId"] in record.getMessage()
    assert "secret-internal-detail" in (record.exc_text or "")


def test_access_log_has_one_line_per_request(api, caplog):
    caplog.set_level(logging.INFO, logger="service.access")
    api.get("/healthz", headers={"X-Request-Id": "probe-1"})
    provision(api, key=None, headers={"X-Request-Id": "probe-2"})
    lines = [r.getMessage() for r in caplog.records if r.name == "service.access"]
    assert len(lines) == 2
    assert re.fullmatch(r"GET /healthz 200 \d+\.\dms request_id=probe-1", lines[0])
    assert re.fullmatch(r"POST /provision 401 \d+\.\dms request_id=probe-2", lines[1])


# The real provisioner against a broker that is not there (port 1): short waits, quick failure.
UNREACHABLE = {"PROVISIONER_CONNECT_TIMEOUT_SECONDS": "1", "PROVISIONER_POOL_WAIT_SECONDS": "0.5",
               "PROVISIONER_STEP_TIMEOUT_SECONDS": "1", "PROVISIONER_REQUEST_TIMEOUT_SECONDS": "3",
               "PROVISIONER_RECONNECT_MIN_SECONDS": "0.1",
               "PROVISIONER_RECONNECT_MAX_SECONDS": "0.5"}


def test_provisioner_is_made_on_first_use_and_kept(serve, make_settings):
    api = serve(make_settings(**UNREACHABLE))
    holder = api.app.extensions["provisioner"]
    assert holder.current is None  # nothing owns a thread or socket before a request needs it
    api.get("/readyz")
    made = holder.current
    assert made is not None
    api.get("/readyz")
    assert holder.current is made


def test_valid_request_reaching_the_real_provisioner_is_503_with_retry_after_and_step(
        serve, make_settings):
    # No provisioner given: the app makes the real one, whose broker (port 1) is unreachable.
    api = serve(make_settings(**UNREACHABLE))
    response = provision(api, {"templateName": "demo", "parameters": {"SerialNumber": "1"}})
    body = problem_of(response, 503)
    assert body["step"] == "connect"
    assert int(response.headers["Retry-After"]) >= 1
    assert api.get("/readyz").status_code == 503


def test_a_provisioner_given_to_create_app_is_the_one_used(api):
    assert api.app.extensions["provisioner"].current is api.provisioner


def test_service_error_base_class_renders_as_500(api):
    api.provisioner.outcome = ServiceError("broken invariant")
    assert problem_of(provision(api), 500)["detail"] == "broken invariant"
