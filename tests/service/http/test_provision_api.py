"""POST /provision end to end over HTTP: successes and AWS-side failures as problems."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from http_checks import (
    assert_provisioned,
    device,
    fleet_certificates,
    problem_of,
    provision,
    wait_for,
)

from emulator import Fault, Limits
from service.provisioning.topics import CERTIFICATE_ANSWER_TOPICS as BASE_FILTERS


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
