"""The HTTP layer over a real socket; every response is checked against openapi.yaml by `api`.

Real parts throughout. A 201 comes from the real Provisioner and the real emulator (`live_api`,
`start_service`), and is checked where a user would look: the body, the headers, the thing and
certificate in the emulator's registry. AWS-side errors come from the emulator's fault injection;
an unreachable broker is a closed port. Requests answered before the provisioner (auth, media
type, size, JSON, rules, routing) go to `api`, whose provisioner would be the real one against
that closed port, and is never made. The only stand-in is `serve_raising`, for a bug.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from openapi_spec_validator import validate as validate_spec

from emulator import Emulator, Fault, Limits
from service.errors import ServiceError
from service.provisioning.topics import CERTIFICATE_ANSWER_TOPICS as BASE_FILTERS

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACT_PATH = REPO_ROOT / "openapi.yaml"
DEMO_TEMPLATE = REPO_ROOT / "emulator" / "data" / "demo.json"


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


def device(serial: str, **fields: Any) -> dict[str, Any]:
    """A request for the emulator's `demo` template, which needs SerialNumber."""
    return {"templateName": "demo", "parameters": {"SerialNumber": serial}, **fields}


def assert_never_reached_the_provisioner(api: Any) -> None:
    # The app makes its provisioner on the first request that needs one: none made means the
    # request was answered by the HTTP layer alone and no MQTT connection was ever opened.
    assert api.app.extensions["provisioner"].current is None


def fleet_certificates(emulator: Emulator) -> list[str]:
    """Certificates made by fleet provisioning (everything but the claim certificate)."""
    return [c["certificateId"] for c in emulator.registry.list_certificates() if c["owner"] != "claim"]


def spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def assert_provisioned(
    emulator: Emulator, response: requests.Response, thing_name: str, *, key_pem: str | None = None
) -> dict[str, Any]:
    """A 201 as its caller checks it: the certificate is for their key, and AWS has the thing."""
    assert response.status_code == 201, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["thingName"] == thing_name
    certificate = x509.load_pem_x509_certificate(body["certificatePem"].encode())
    assert body["certificateId"] == certificate.fingerprint(hashes.SHA256()).hex()
    if key_pem is None:  # AWS made the key pair: the answer carries it
        key_pem = body["privateKey"]
    else:  # the caller sent a CSR: their key never leaves them
        assert "privateKey" not in body
    own_key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert spki(certificate.public_key()) == spki(own_key.public_key())
    thing = emulator.registry.describe_thing(thing_name)
    assert thing is not None and body["certificateId"] in thing["principals"]
    assert emulator.registry.certificate_status(body["certificateId"]) == "ACTIVE"
    return body


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --- operations endpoints -------------------------------------------------------------------


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


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(api, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.post("/provision", data=b'{"templateName": "demo"}', headers=headers)
    body = problem_of(response, 415)
    assert "application/json" in body["detail"]
    assert_never_reached_the_provisioner(api)


def test_content_type_with_charset_is_accepted(emulator, live_api):
    response = live_api.post(
        "/provision",
        data=b'{"templateName": "demo", "parameters": {"SerialNumber": "UTF8"}}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert_provisioned(emulator, response, "demo-UTF8")


def test_oversized_body_is_413(api):
    body = b'{"templateName": "demo", "parameters": {"a": "' + b"x" * 70000 + b'"}}'
    response = api.post("/provision", data=body, headers={"Content-Type": "application/json"})
    assert "65536" in problem_of(response, 413)["detail"]
    assert_never_reached_the_provisioner(api)


def test_oversized_chunked_body_is_413(api):
    # No Content-Length: the limit must hold while the body streams in.
    chunks = iter([b'{"templateName": "demo", "parameters": {"a": "'] + [b"x" * 8192] * 10 + [b'"}}'])
    response = api.post("/provision", data=chunks, headers={"Content-Type": "application/json"})
    problem_of(response, 413)
    assert_never_reached_the_provisioner(api)


def test_body_limit_comes_from_settings(serve, unreachable_settings):
    api = serve(unreachable_settings(PROVISIONER_MAX_BODY_BYTES="1024"))
    response = provision(api, {"templateName": "demo", "parameters": {"a": "x" * 1100}})
    assert "1024" in problem_of(response, 413)["detail"]
    assert_never_reached_the_provisioner(api)


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b'{"templateName": "demo"', "Expecting ',' delimiter: line 1 column 24"),
        (b"", "line 1 column 1"),
        (b"{'templateName': 'demo'}", "line 1 column 2"),
        (b'{"templateName": "demo",\n "parameters": {,}}', "line 2 column 17"),
        (b'{"templateName": "demo", "templateName": "other"}', "duplicate key 'templateName'"),
        (b'{"templateName": "demo", "parameters": {"a": NaN}}', "NaN is not a JSON value"),
        (b'{"templateName": "d\xffmo"}', "not UTF-8 at byte 19"),
        (b"[" * 60000 + b"]" * 60000, "nested too deeply"),
    ],
)
def test_malformed_json_is_400_naming_the_position(serve, unreachable_settings, raw, detail):
    api = serve(unreachable_settings(PROVISIONER_MAX_BODY_BYTES="131072"))
    response = api.post("/provision", data=raw, headers={"Content-Type": "application/json"})
    body = problem_of(response, 400)
    assert body["detail"].startswith("body is not valid JSON: ")
    assert detail in body["detail"]
    assert "errors" not in body
    assert_never_reached_the_provisioner(api)


@pytest.mark.parametrize(
    ("value", "kind"), [([], "array"), ("demo", "string"), (5, "number"), (None, "null"), (True, "boolean")]
)
def test_json_that_is_not_an_object_is_400(api, value, kind):
    response = api.post("/provision", data=json.dumps(value), headers={"Content-Type": "application/json"})
    assert problem_of(response, 400)["detail"] == f"body must be a JSON object, got {kind}"
    assert_never_reached_the_provisioner(api)


# --- the rules: 422 naming the field --------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"templateName": 5}, "templateName", "Not a valid string."),
        ({"templateName": None}, "templateName", "Field may not be null."),
        ({}, "templateName", "Missing data for required field."),
        ({"templateName": "demo", "parameters": []}, "parameters", "Not a valid mapping type."),
        (
            {"templateName": "demo", "parameters": {"SerialNumber": 42}},
            "parameters",
            "parameter 'SerialNumber' must be a string, got number",
        ),
        (
            {"templateName": "demo", "parameters": {"SerialNumber": None}},
            "parameters",
            "parameter 'SerialNumber' must be a string, got null",
        ),
        ({"templateName": "demo", "csr": 7}, "csr", "Not a valid string."),
        ({"templateName": "demo", "csr": None}, "csr", "Field may not be null."),
    ],
)
def test_wrong_types_are_422_naming_the_field(api, body, field, message):
    problem = problem_of(provision(api, body), 422)
    assert problem["errors"] == {field: [message]}
    assert problem["detail"] == f"The request breaks 1 rule(s): {field}: {message}"
    assert_never_reached_the_provisioner(api)


def test_every_broken_rule_is_named_at_once(api):
    problem = problem_of(
        provision(api, {"templateName": "a b", "parameters": [], "csr": 1, "color": "red"}), 422
    )
    assert set(problem["errors"]) == {"templateName", "parameters", "csr", "color"}


def test_unknown_field_is_422_naming_it(api):
    problem = problem_of(provision(api, {"templateName": "demo", "templatename": "x"}), 422)
    assert problem["errors"] == {"templatename": ["unknown field (allowed: templateName, parameters, csr)"]}


@pytest.mark.parametrize("name", ["", "a b", "x" * 37, "demo/../x", "dëmo", "demo\n"])
def test_bad_template_name_is_422(api, name):
    problem = problem_of(provision(api, {"templateName": name}), 422)
    assert problem["errors"] == {"templateName": ["must be 1-36 characters of [0-9A-Za-z_-]"]}


def test_template_name_of_36_allowed_characters_is_accepted(make_emulator, start_service, templates_dir):
    name = "Ab0_-" * 7 + "z"
    (templates_dir / f"{name}.json").write_text(DEMO_TEMPLATE.read_text())
    aws = make_emulator(templates_dir=templates_dir)
    api = start_service(emulator=aws)
    response = provision(api, {"templateName": name, "parameters": {"SerialNumber": "T36"}})
    assert_provisioned(aws, response, "demo-T36")
    assert [use["templateName"] for use in aws.registry.list_template_uses()] == [name]


def test_too_many_parameters_is_422(api):
    parameters = {f"p{i}": "v" for i in range(33)}
    problem = problem_of(provision(api, {"templateName": "demo", "parameters": parameters}), 422)
    assert problem["errors"] == {"parameters": ["at most 32 parameters are allowed, got 33"]}


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"k" * 129: "v"}, f"parameter name '{'k' * 40}...' is longer than 128 characters"),
        ({"serial": "v" * 2049}, "parameter 'serial' is longer than 2048 characters"),
        ({"": "v"}, "a parameter name must not be empty"),
    ],
)
def test_oversized_or_empty_parameter_key_or_value_is_422(api, parameters, message):
    problem = problem_of(provision(api, {"templateName": "demo", "parameters": parameters}), 422)
    assert problem["errors"] == {"parameters": [message]}


def test_parameter_bounds_at_the_limit_are_accepted(make_emulator, start_service, templates_dir):
    parameters = {f"{i:02d}" + "k" * 126: "v" * 100 for i in range(32)}
    parameters["00" + "k" * 126] = "v" * 2048
    # A template that declares every parameter and hands each back in its DeviceConfiguration:
    # the answer shows exactly what AWS received.
    echo = {
        "Parameters": {name: {"Type": "String"} for name in parameters},
        "Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": "at-the-limit"}}},
        "DeviceConfiguration": {name: {"Ref": name} for name in parameters},
    }
    (templates_dir / "echo.json").write_text(json.dumps(echo))
    aws = make_emulator(templates_dir=templates_dir)
    api = start_service(emulator=aws)
    response = provision(api, {"templateName": "echo", "parameters": parameters})
    body = assert_provisioned(aws, response, "at-the-limit")
    assert body["deviceConfiguration"] == parameters


def test_parameter_bounds_come_from_settings(serve, unreachable_settings):
    api = serve(
        unreachable_settings(
            PROVISIONER_MAX_PARAMETERS="1",
            PROVISIONER_MAX_PARAMETER_KEY_LENGTH="3",
            PROVISIONER_MAX_PARAMETER_VALUE_LENGTH="4",
        )
    )
    problem = problem_of(
        provision(api, {"templateName": "demo", "parameters": {"abcd": "12345", "b": "1"}}), 422
    )
    assert problem["errors"] == {
        "parameters": [
            "at most 1 parameters are allowed, got 2",
            "parameter name 'abcd' is longer than 3 characters",
            "parameter 'abcd' is longer than 4 characters",
        ]
    }
    assert_never_reached_the_provisioner(api)


def _tampered(csr_pem: str) -> str:
    der = bytearray(x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature: the CSR still parses but no longer verifies
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda csr: "hello",
            "not a valid PEM certificate signing request (no -----BEGIN CERTIFICATE REQUEST-----)",
        ),
        (lambda csr: csr.replace(csr.splitlines()[2], "", 1), "not a valid PEM certificate signing request"),
        (
            lambda csr: (
                "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"
            ),
            "not a valid PEM certificate signing request",
        ),
        (
            _tampered,
            "not a valid PEM certificate signing request (its signature does not match its public key)",
        ),
        (lambda csr: csr + "x" * 16384, "longer than 16384 characters"),
    ],
)
def test_csr_that_is_not_a_csr_is_422(api, csr_pem, make, message):
    problem = problem_of(provision(api, {"templateName": "demo", "csr": make(csr_pem)}), 422)
    assert problem["errors"] == {"csr": [message]}
    assert problem["detail"] == f"The request breaks 1 rule(s): csr: {message}"
    assert_never_reached_the_provisioner(api)


def test_server_generated_keys_forbidden_requires_a_csr_422(emulator, start_service, device_csr):
    api = start_service(PROVISIONER_ALLOW_SERVER_KEYS="false")
    problem = problem_of(provision(api, device("NOKEY")), 422)
    assert list(problem["errors"]) == ["csr"]
    assert "send a certificate signing request" in problem["errors"]["csr"][0]
    assert fleet_certificates(emulator) == [] and emulator.registry.list_things() == []
    key_pem, csr_pem = device_csr
    assert_provisioned(emulator, provision(api, device("NOKEY", csr=csr_pem)), "demo-NOKEY", key_pem=key_pem)


# --- routing --------------------------------------------------------------------------------


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


def test_valid_request_reaches_the_provisioner_and_answers_201(emulator, live_api, caplog):
    caplog.set_level(logging.INFO, logger="service.provisioner")
    response = provision(live_api, device("SN1"), headers={"X-Request-Id": "factory-7.run_3"})
    body = assert_provisioned(emulator, response, "demo-SN1")
    assert response.headers["X-Request-Id"] == "factory-7.run_3"
    assert set(body) == {"thingName", "certificateId", "certificatePem", "privateKey", "deviceConfiguration"}
    assert body["deviceConfiguration"] == {"location": "factory", "serial": "SN1"}
    assert emulator.registry.describe_thing("demo-SN1")["attributes"] == {
        "serial": "SN1",
        "location": "factory",
    }
    certificate = emulator.registry.describe_certificate(body["certificateId"])
    assert certificate["certificatePem"] == body["certificatePem"]
    assert fleet_certificates(emulator) == [body["certificateId"]]  # one flow, one certificate
    # The caller's request id reaches the flow: the provisioner's own log line carries it.
    assert [
        r.getMessage()
        for r in caplog.records
        if r.name == "service.provisioner"
        and r.getMessage().startswith("request factory-7.run_3: provisioned thing 'demo-SN1'")
    ]


def test_csr_flow_passes_the_csr_and_omits_private_key(emulator, live_api, device_csr):
    key_pem, csr_pem = device_csr
    # Omitted parameters reach RegisterThing as none: AWS names the one the template needs.
    problem = problem_of(provision(live_api, {"templateName": "demo", "csr": csr_pem}), 400)
    assert problem["step"] == "register" and "SerialNumber" in problem["errorMessage"]
    response = provision(live_api, device("CSR1", csr=csr_pem))
    assert_provisioned(emulator, response, "demo-CSR1", key_pem=key_pem)


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


@pytest.mark.parametrize(
    ("operation", "step", "reject", "status", "slug"),
    [
        ("register_thing", "register", (404, "NotFoundException", "no template"), 404, "template-not-found"),
        ("register_thing", "register", (403, "ACCESS_DENIED", "hook denied"), 403, "aws-rejected"),
        (
            "register_thing",
            "register",
            (400, "InvalidParameters", "missing SerialNumber"),
            400,
            "aws-rejected",
        ),
        ("create_keys_and_certificate", "create", (500, "InternalFailure", "oops"), 502, "aws-rejected"),
    ],
)
def test_aws_rejections_render_as_problems(emulator, live_api, operation, step, reject, status, slug):
    emulator.set_fault(operation, Fault(reject=reject, count=1))
    response = provision(live_api, device("REJ"))
    body = problem_of(response, status)
    status_code, error_code, error_message = reject
    assert body["type"].endswith(f"/{slug}")
    assert body["detail"] == f"AWS IoT rejected {step}: {error_code}: {error_message}"
    assert {
        "step": step,
        "statusCode": status_code,
        "errorCode": error_code,
        "errorMessage": error_message,
    }.items() <= body.items()
    assert "Retry-After" not in response.headers
    assert emulator.registry.describe_thing("demo-REJ") is None


def test_aws_throttling_is_429_with_retry_after(emulator, live_api):
    emulator.set_fault("create_keys_and_certificate", Fault(throttle=(0.001, 0)))
    response = provision(live_api, device("THR"))
    body = problem_of(response, 429)
    assert body["type"].endswith("/throttled")
    assert body["detail"] == "AWS IoT rejected create: ThrottlingException: Rate exceeded"
    assert {
        "step": "create",
        "statusCode": 429,
        "errorCode": "ThrottlingException",
        "errorMessage": "Rate exceeded",
    }.items() <= body.items()
    assert int(response.headers["Retry-After"]) >= 1
    assert fleet_certificates(emulator) == []


def test_no_answer_within_the_step_deadline_is_504(emulator, start_service):
    api = start_service(PROVISIONER_STEP_TIMEOUT_SECONDS="0.5")
    emulator.set_fault("register_thing", Fault(late=2, count=1))
    response = provision(api, device("LATE"))
    body = problem_of(response, 504)
    assert body["type"].endswith("/upstream-timeout")
    assert body["step"] == "register"
    assert body["detail"] == "no answer from AWS IoT to register within the deadline"
    assert "Retry-After" not in response.headers


def test_every_connection_busy_is_503_with_retry_after(emulator, start_service):
    api = start_service(PROVISIONER_POOL_SIZE="1", PROVISIONER_POOL_WAIT_SECONDS="0.1")
    emulator.set_fault("register_thing", Fault(latency=(0.8, 0.8), count=1))
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(provision, api, device("BUSY-1"))
        wait_for(lambda: api.get("/readyz").json()["busyConnections"] == 1)
        response = provision(api, device("BUSY-2"))
        body = problem_of(response, 503)
        assert body["type"].endswith("/no-free-connection")
        assert body["detail"] == "all 1 MQTT connections were busy for 0.1 s; retry shortly"
        assert "step" not in body
        assert int(response.headers["Retry-After"]) >= 1
        assert_provisioned(emulator, first.result(), "demo-BUSY-1")
    assert emulator.registry.describe_thing("demo-BUSY-2") is None


def test_unusable_aws_answer_is_502(make_emulator, start_service):
    # AWS refuses a subscription with SUBACK 0x80 (a claim policy, a limit): here the emulator
    # has room for the certificate topics only, so the template's answer topics are refused.
    aws = make_emulator(limits=Limits(max_subscriptions=len(BASE_FILTERS)))
    api = start_service(emulator=aws)
    response = provision(api, device("SUB"))
    body = problem_of(response, 502)
    assert body["type"].endswith("/upstream-invalid")
    assert body["step"] == "subscribe"
    assert "refused the subscription to template 'demo'" in body["detail"]
    assert "Retry-After" not in response.headers
    assert aws.registry.describe_thing("demo-SUB") is None


# --- bugs: the one stand-in, a provisioner raising what the real one never raises -----------


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
