"""POST /provision end to end: HTTP -> Flask -> paho pool -> the real emulator, and back.

Every response is checked against openapi.yaml by the `serve` client; `start_service`,
`settings_for` and `ApiClient.wait_ready` are shared from tests/service/conftest.py.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from device_keys import make_csr
from emulators import on_the_ports_of
from http_checks import provision_serial, spki
from repository import DEMO_TEMPLATE

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator, Fault

MODES = ["sigv4", "certificate"]


@pytest.mark.parametrize("mode", MODES)
def test_csr_flow_returns_a_certificate_for_the_callers_key(
    emulator: Emulator, start_service, device_csr, mode: str
) -> None:
    api = start_service(mode)
    key_pem, csr_pem = device_csr
    response = api.post(
        "/provision",
        json={
            "templateName": "demo",
            "csr": csr_pem,
            "parameters": {"SerialNumber": f"CSR-{mode}", "DeviceLocation": "bay-7"},
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert "privateKey" not in body
    certificate = x509.load_pem_x509_certificate(body["certificatePem"].encode())
    device_key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert spki(certificate.public_key()) == spki(device_key.public_key())
    assert body["thingName"] == f"demo-CSR-{mode}"
    assert body["deviceConfiguration"] == {"location": "bay-7", "serial": f"CSR-{mode}"}
    thing = emulator.registry.describe_thing(body["thingName"])
    assert thing is not None and body["certificateId"] in thing["principals"]
    assert emulator.registry.certificate_status(body["certificateId"]) == "ACTIVE"


@pytest.mark.parametrize("mode", MODES)
def test_server_generated_key_flow_returns_the_matching_key(
    emulator: Emulator, start_service, mode: str
) -> None:
    api = start_service(mode)
    response = provision_serial(api, f"KEY-{mode}")
    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    key = serialization.load_pem_private_key(body["privateKey"].encode(), None)
    certificate = x509.load_pem_x509_certificate(body["certificatePem"].encode())
    assert spki(certificate.public_key()) == spki(key.public_key())
    assert emulator.registry.certificate_status(body["certificateId"]) == "ACTIVE"
    assert emulator.registry.describe_thing(f"demo-KEY-{mode}") is not None


def test_readiness_describes_the_pool(start_service) -> None:
    api = start_service()
    detail = api.wait_ready()
    deadline = time.monotonic() + 10  # ready means one connection; wait for both
    while detail["readyConnections"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        detail = api.get("/readyz").json()
    assert detail["ready"] is True and detail["readyConnections"] == 2
    assert len({c["clientId"] for c in detail["connections"]}) == 2


# -- AWS rejections arrive as mapped statuses with AWS's own fields ---------------------------


def test_unknown_template_is_404_with_aws_fields(start_service) -> None:
    response = provision_serial(start_service(), "X", template="no-such-template")
    assert response.status_code == 404
    problem = response.json()
    assert (problem["step"], problem["errorCode"]) == ("register", "ResourceNotFoundException")
    assert "no-such-template" in problem["errorMessage"]


def test_missing_template_parameter_is_400_with_aws_message(start_service) -> None:
    response = start_service().post("/provision", json={"templateName": "demo"})
    assert response.status_code == 400
    problem = response.json()
    assert problem["step"] == "register" and "SerialNumber" in problem["errorMessage"]


def test_aws_throttling_is_429_with_retry_after(emulator: Emulator, start_service) -> None:
    api = start_service()
    emulator.set_fault("register_thing", Fault(throttle=(0.001, 0)))
    response = provision_serial(api, "T1")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["errorCode"] == "ThrottlingException"


def test_aws_server_error_is_502(emulator: Emulator, start_service) -> None:
    api = start_service()
    emulator.set_fault("create_certificate_from_csr", Fault(reject=(500, "InternalFailure", "boom"), count=1))
    response = provision_serial(api, "E1", make_csr()[1])
    assert response.status_code == 502
    assert (response.json()["step"], response.json()["errorCode"]) == ("create", "InternalFailure")


def test_hook_denial_is_403_access_denied(tmp_path: Path, serve, settings_for, templates_dir: Path) -> None:
    import json as _json

    demo = _json.loads(DEMO_TEMPLATE.read_text())
    # A hook URL where nothing listens: the hook fails, and AWS rejects (ACCESS_DENIED).
    (templates_dir / "hooked.json").write_text(
        _json.dumps({"templateBody": demo, "preProvisioningHook": {"url": "http://127.0.0.1:9/hook"}})
    )
    with Emulator(
        data_dir=tmp_path / "data", templates_dir=templates_dir, key_algorithm="ec", key_pool_size=1
    ) as emulator:
        api = serve(settings_for(emulator, "sigv4"))
        api.wait_ready()
        response = provision_serial(api, "H1", template="hooked")
    assert response.status_code == 403
    assert response.json()["errorCode"] == "ACCESS_DENIED"


# -- correlation under load, late answers, faults ---------------------------------------------


def test_many_concurrent_callers_each_get_their_own_certificate_and_thing(
    emulator: Emulator, start_service
) -> None:
    api = start_service(PROVISIONER_POOL_SIZE="4", PROVISIONER_POOL_WAIT_SECONDS="15")
    emulator.set_fault("*", Fault(latency=(0.0, 0.02)))
    requests_ = [(f"MIX-{i:03d}", *make_csr(f"dev-{i}")) for i in range(200)]

    def one(item):
        serial, key_pem, csr_pem = item
        return item, provision_serial(api, serial, csr_pem)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, requests_))
    for (serial, key_pem, _), response in results:
        assert response.status_code == 201, response.text
        body = response.json()
        certificate = x509.load_pem_x509_certificate(body["certificatePem"].encode())
        own_key = serialization.load_pem_private_key(key_pem.encode(), None)
        assert spki(certificate.public_key()) == spki(own_key.public_key()), serial
        assert body["thingName"] == f"demo-{serial}"
        assert body["deviceConfiguration"]["serial"] == serial
        thing = emulator.registry.describe_thing(f"demo-{serial}")
        assert body["certificateId"] in thing["principals"]
    assert len({r.json()["certificateId"] for _, r in results}) == 200


def test_late_answer_gives_504_and_never_reaches_the_next_request(
    emulator: Emulator, start_service, device_csr
) -> None:
    api = start_service(
        PROVISIONER_POOL_SIZE="1", PROVISIONER_STEP_TIMEOUT_SECONDS="0.5", PROVISIONER_POOL_WAIT_SECONDS="10"
    )
    emulator.set_fault("register_thing", Fault(late=1.0, count=1))
    response = provision_serial(api, "LATE-1")
    assert response.status_code == 504
    assert response.json()["step"] == "register"
    for index in range(3):
        key_pem, csr_pem = make_csr()
        response = provision_serial(api, f"NEXT-{index}", csr_pem)
        assert response.status_code == 201, response.text
        assert response.json()["thingName"] == f"demo-NEXT-{index}"
        certificate = x509.load_pem_x509_certificate(response.json()["certificatePem"].encode())
        own = serialization.load_pem_private_key(key_pem.encode(), None)
        assert spki(certificate.public_key()) == spki(own.public_key())
    time.sleep(1.0)  # the late answer has now arrived at the discarded connection, not here
    assert provision_serial(api, "AFTER").json()["thingName"] == "demo-AFTER"


@pytest.mark.parametrize("with_csr", [True, False])
def test_duplicate_answers_never_mix_up_callers_or_starve_the_pool(
    emulator: Emulator, start_service, with_csr: bool
) -> None:
    api = start_service(PROVISIONER_POOL_SIZE="2", PROVISIONER_POOL_WAIT_SECONDS="10")
    emulator.set_fault("*", Fault(answer_twice=True))
    for index in range(12):  # every link is dirtied (mid-flow or idle) and replaced, again and again
        key_pem, csr_pem = make_csr()
        response = provision_serial(api, f"DUP-{index}", csr_pem if with_csr else None)
        assert response.status_code == 201, response.text
        body = response.json()
        certificate = x509.load_pem_x509_certificate(body["certificatePem"].encode())
        own = serialization.load_pem_private_key((key_pem if with_csr else body["privateKey"]).encode(), None)
        assert spki(certificate.public_key()) == spki(own.public_key())
        assert body["thingName"] == f"demo-DUP-{index}"
        thing = emulator.registry.describe_thing(f"demo-DUP-{index}")
        assert body["certificateId"] in thing["principals"]


def test_failing_credentials_do_not_kill_a_connection_for_good(
    emulator: Emulator, serve, settings_for
) -> None:
    from service.mqtt.sigv4 import AwsCredentials
    from service.provisioning.flow import Provisioner

    failures = [3]

    def flaky() -> AwsCredentials:
        if failures[0] > 0:  # the credential source is down for the first attempts
            failures[0] -= 1
            raise ValueError("no AWS credentials found")
        return AwsCredentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY)

    settings = settings_for(emulator, PROVISIONER_POOL_SIZE="1").replace(static_credentials=None)
    provisioner = Provisioner(settings, credentials=flaky)
    try:
        api = serve(settings, provisioner)
        api.wait_ready(timeout=20)
        assert provision_serial(api, "CRED-1").status_code == 201
        assert failures[0] == 0
    finally:
        provisioner.close()


def test_broker_down_at_start_then_recovers(tmp_path: Path, serve, make_settings) -> None:
    probe = Emulator(data_dir=tmp_path, key_algorithm="ec", key_pool_size=1).start()
    ports = probe.ports
    probe.stop()  # nothing listens now; same CA and data dir for the real start
    emulator = on_the_ports_of(ports, tmp_path, key_pool_size=1)
    settings = make_settings(
        **{
            "PROVISIONER_IOT_ENDPOINT": f"wss://localhost:{ports['wss']}/mqtt",
            "PROVISIONER_AUTH_MODE": "sigv4",
            "PROVISIONER_AWS_REGION": "us-east-1",
            "PROVISIONER_CA_FILE": str(tmp_path / "ca.pem"),
            "PROVISIONER_POOL_SIZE": "2",
            "PROVISIONER_POOL_WAIT_SECONDS": "0.5",
            "PROVISIONER_RECONNECT_MIN_SECONDS": "0.2",
            "PROVISIONER_RECONNECT_MAX_SECONDS": "0.5",
        }
    ).replace(static_credentials=(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY))
    api = serve(settings)
    assert api.get("/readyz").status_code == 503
    response = provision_serial(api, "DOWN")
    assert response.status_code == 503
    assert response.json()["step"] == "connect" and "Retry-After" in response.headers
    emulator.start()
    try:
        api.wait_ready(timeout=20)
        assert provision_serial(api, "UP").status_code == 201
    finally:
        emulator.stop()


def test_emulator_restart_under_load_ends_every_request_cleanly(tmp_path: Path, serve, settings_for) -> None:
    emulator = Emulator(data_dir=tmp_path, key_algorithm="ec", key_pool_size=2).start()
    ports = emulator.ports
    settings = settings_for(
        emulator,
        "sigv4",
        PROVISIONER_POOL_SIZE="3",
        PROVISIONER_POOL_WAIT_SECONDS="1",
        PROVISIONER_REQUEST_TIMEOUT_SECONDS="5",
        PROVISIONER_STEP_TIMEOUT_SECONDS="2",
    )
    api = serve(settings)
    api.wait_ready()
    stop = threading.Event()
    outcomes: list[tuple[int, float]] = []

    def caller(n: int) -> None:
        index = 0
        while not stop.is_set():
            started = time.monotonic()
            response = provision_serial(api, f"R{n}-{index}")
            outcomes.append((response.status_code, time.monotonic() - started))
            index += 1

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.7)
        emulator.stop()
        time.sleep(0.5)
        emulator = on_the_ports_of(ports, tmp_path, key_pool_size=2).start()
        api.wait_ready(timeout=20)
        time.sleep(0.7)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        emulator.stop()
    statuses = {status for status, _ in outcomes}
    assert 201 in statuses
    assert statuses <= {201, 502, 503, 504}, statuses
    assert max(elapsed for _, elapsed in outcomes) < 5 + 1.5  # request deadline + slack
    assert not any(thread.is_alive() for thread in threads)
