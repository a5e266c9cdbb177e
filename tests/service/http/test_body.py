"""Request bodies: media type, size, JSON, the rules of each field, the CSR."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from http_checks import (
    assert_never_reached_the_provisioner,
    assert_provisioned,
    device,
    fleet_certificates,
    problem_of,
    provision,
)
from repository import DEMO_TEMPLATE


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
