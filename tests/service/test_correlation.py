"""Answers carry no correlation token: no caller ever gets an answer that was not for its request.

AWS's fleet-provisioning answers go only to the connection that asked and say nothing about which
request they answer; QoS 1 makes duplicates (a repeated answer, a redelivered request handled
twice) possible. The service alternates JSON and CBOR between consecutive flows on a connection
and waits for a per-format quiet window (docs/correlation.md). These tests inject late
duplicates and double processing and check every answer against the caller's own request.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from device_keys import make_csr
from http_checks import provision_serial, spki

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator, Fault
from service.mqtt import payloads
from service.mqtt.link import MqttLink
from service.serving.launcher import gunicorn_command

API_KEY = "correlation-test-key-0123456789"
CALLERS = 300


# -- the whole stack under gunicorn, every operation duplicated ----------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_gunicorn(emulator: Emulator, tmp_path: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PROVISIONER_", "AWS_"))}
    env.update(
        {
            "PROVISIONER_BIND": f"127.0.0.1:{port}",
            "PROVISIONER_WORKERS": "2",
            "PROVISIONER_THREADS": "16",
            "PROVISIONER_POOL_SIZE": "4",
            "PROVISIONER_POOL_WAIT_SECONDS": "25",
            "PROVISIONER_REQUEST_TIMEOUT_SECONDS": "40",
            "PROVISIONER_STEP_TIMEOUT_SECONDS": "10",
            "PROVISIONER_RECONNECT_MIN_SECONDS": "0.1",
            "PROVISIONER_RECONNECT_MAX_SECONDS": "1",
            "PROVISIONER_LOG_LEVEL": "WARNING",
            "PROVISIONER_IOT_ENDPOINT": emulator.urls["wss"],
            "PROVISIONER_AUTH_MODE": "sigv4",
            "PROVISIONER_AWS_REGION": "us-east-1",
            "PROVISIONER_CA_FILE": str(emulator.ca_path),
            "PROVISIONER_API_KEYS": API_KEY,
            "PROVISIONER_DATABASE_URL": f"sqlite:///{tmp_path / 'provisioner.db'}",
            "AWS_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DEFAULT_SECRET_ACCESS_KEY,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    with log_path.open("w") as log:  # a file, not a pipe: 300 requests of warnings would fill it
        process = subprocess.Popen(
            gunicorn_command(),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"gunicorn exited with {process.returncode}: {log_path.read_text()}"
        try:
            if requests.get(base + "/readyz", timeout=2).status_code == 200:
                return process, base
        except requests.RequestException:  # not listening yet, or busy starting its workers
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"service not ready in time: {log_path.read_text()}")


def test_no_caller_gets_another_flows_answer_under_late_duplicates_and_redelivery(
    make_emulator, tmp_path: Path
) -> None:
    emulator = make_emulator(key_pool_size=4)
    log_path = tmp_path / "gunicorn.log"
    process, base = _start_gunicorn(emulator, tmp_path, log_path)
    # Every operation: each answer again 0-50 ms later, and each request handled a second time
    # 0-50 ms later (Create*: a second certificate; RegisterThing: a rejection for the spent
    # token, or a repeat), whose answers are repeated too.
    emulator.set_fault("*", Fault(answer_twice=(0.0, 0.05), process_twice=(0.0, 0.05)))
    # Two of three callers send a CSR (their certificate must carry their own key); the others
    # get a server-made key. Each has its own serial: thingName and deviceConfiguration echo it.
    callers = [(f"COR-{i:03d}", *(make_csr(f"cor-{i}") if i % 3 else (None, None))) for i in range(CALLERS)]
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=CALLERS))

    def one(caller: tuple[str, str | None, str | None]) -> requests.Response:
        serial, _, csr = caller
        body: dict[str, Any] = {"templateName": "demo", "parameters": {"SerialNumber": serial}}
        if csr is not None:
            body["csr"] = csr
        return session.post(
            base + "/provision", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120
        )

    try:
        with ThreadPoolExecutor(max_workers=CALLERS) as pool:  # all 300 at once
            responses = list(pool.map(one, callers))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        session.close()

    wrong: list[str] = []  # answers that were not for the caller's request
    unclean: list[str] = []  # failures other than a clean 502/503/504
    outcomes: Counter[str] = Counter()
    certificate_ids: list[str] = []
    for (serial, key_pem, _), response in zip(callers, responses, strict=True):
        if response.status_code != 201:
            problem = response.json()
            outcomes[f"{response.status_code} {problem['type'].rsplit('/', 1)[1]}"] += 1
            retryable = response.status_code == 503 or problem["type"].endswith("/answer-unproven")
            if response.status_code not in (502, 503, 504) or "thingName" in problem:
                unclean.append(f"{serial}: {response.status_code} {problem['detail']}")
            elif retryable and not response.headers.get("Retry-After"):
                unclean.append(f"{serial}: {response.status_code} without Retry-After")
            continue
        outcomes["201"] += 1
        body = response.json()
        certificate = x509.load_pem_x509_certificate(body["certificatePem"].encode())
        own_key = serialization.load_pem_private_key((key_pem or body["privateKey"]).encode(), None)
        thing = emulator.registry.describe_thing(f"demo-{serial}")
        if body["thingName"] != f"demo-{serial}":
            wrong.append(f"{serial}: thingName {body['thingName']}")
        if body["deviceConfiguration"].get("serial") != serial:
            wrong.append(f"{serial}: deviceConfiguration {body['deviceConfiguration']}")
        if spki(certificate.public_key()) != spki(own_key.public_key()):
            wrong.append(f"{serial}: certificate for another key")
        if thing is None or body["certificateId"] not in thing["principals"]:
            wrong.append(f"{serial}: certificate {body['certificateId'][:12]} not attached to its thing")
        certificate_ids.append(body["certificateId"])
    print(
        f"\n{CALLERS} concurrent callers under duplicates and redelivery: {dict(outcomes)}; "
        f"{len(wrong)} wrong answers, {len(unclean)} unclean failures"
    )
    assert wrong == [], wrong
    assert unclean == [], unclean
    assert len(set(certificate_ids)) == len(certificate_ids), "a certificate went to two callers"
    assert outcomes["201"] >= CALLERS * 0.9, outcomes
    assert "Traceback" not in log_path.read_text()


# -- the two cases the mechanism rests on, made to happen on a one-connection pool --------------


def link_id(api: Any) -> str:
    """The client id of the pool's one connection."""
    return str(api.get("/readyz").json()["connections"][0]["clientId"])


@pytest.fixture
def one_link(start_service: Any) -> tuple[Any, str]:
    """A service whose pool is one connection with no quiet window, and that connection's client id."""
    api = start_service(PROVISIONER_POOL_SIZE="1", PROVISIONER_QUIET_WINDOW_SECONDS="0")
    return api, link_id(api)


def assert_link_replaced(api: Any, client_id: str) -> None:
    """Once the service is ready again, its connection is another than `client_id`."""
    api.wait_ready()
    assert link_id(api) != client_id


def test_late_duplicate_of_the_previous_flows_answer_never_reaches_the_next_caller(
    emulator: Emulator, start_service
) -> None:
    api = start_service(PROVISIONER_POOL_SIZE="1", PROVISIONER_POOL_WAIT_SECONDS="5")
    client_id = link_id(api)
    # The first flow's RegisterThing answer comes again 150 ms later: in the middle of the next
    # flow's RegisterThing wait (each step of which takes 100 ms), for the same template.
    emulator.set_fault("create_certificate_from_csr", Fault(latency=(0.1, 0.1)))
    emulator.set_fault("register_thing", Fault(latency=(0.1, 0.1), answer_twice=0.15, count=1))
    first = provision_serial(api, "PREV", make_csr()[1])
    assert first.status_code == 201, first.text
    emulator.set_fault("register_thing", Fault(latency=(0.1, 0.1)))
    second = provision_serial(api, "NEXT", make_csr()[1])
    # The repeat arrived on the previous flow's format: not what this flow waited for.
    assert second.status_code == 201, second.text
    assert second.json()["thingName"] == "demo-NEXT"
    assert second.json()["deviceConfiguration"]["serial"] == "NEXT"
    # ...and the connection that saw it was replaced.
    assert_link_replaced(api, client_id)
    assert provision_serial(api, "AFTER").json()["thingName"] == "demo-AFTER"


def unproven_and_retryable(refused: requests.Response) -> dict[str, Any]:
    """The problem of a 502 answer-unproven: nothing handed out, to be retried after 1 s."""
    assert refused.status_code == 502, refused.text
    problem: dict[str, Any] = refused.json()
    assert problem["type"].endswith("/answer-unproven")
    assert "nothing was handed out; retry" in problem["detail"]
    assert refused.headers["Retry-After"] == "1"
    return problem


def assert_a_retry_provisions(api: Any, serial: str) -> None:
    retried = provision_serial(api, serial, make_csr()[1])
    assert retried.status_code == 201, retried.text
    assert retried.json()["thingName"] == f"demo-{serial}"


def test_an_answer_older_than_the_quiet_window_fails_the_flow_with_a_retryable_502(
    emulator: Emulator, start_service
) -> None:
    api = start_service(PROVISIONER_POOL_SIZE="1", PROVISIONER_QUIET_WINDOW_SECONDS="0.1")
    # Flow 1 (JSON)'s RegisterThing answer comes again 800 ms later. Flow 2 (CBOR) takes 500 ms,
    # so the repeat lands while flow 3 (JSON again) waits 500 ms for its certificate: a template
    # answer in its own format that it has not asked for, i.e. older than a whole flow plus the
    # window. Margins of 0.2-0.3 s either side: a loaded machine's HTTP turn-around fits in them.
    emulator.set_fault("create_certificate_from_csr", Fault(latency=(0.5, 0.5)))
    emulator.set_fault("register_thing", Fault(answer_twice=0.8, count=1))
    responses = [provision_serial(api, f"OLD-{i}", make_csr()[1]) for i in range(3)]
    assert [r.status_code for r in responses[:2]] == [201, 201], [r.text for r in responses]
    problem = unproven_and_retryable(responses[2])
    assert problem["step"] == "create"  # refused while it waited for its certificate
    assert "could not be proven to be this request's" in problem["detail"]
    # Refused before RegisterThing was sent: its certificate exists in AWS, no thing was made.
    assert emulator.registry.describe_thing("demo-OLD-2") is None
    api.wait_ready()
    assert_a_retry_provisions(api, "OLD-2")


def test_a_link_dirtied_after_the_pool_chose_it_refuses_its_flow_with_a_retryable_502(
    emulator: Emulator, one_link: tuple[Any, str], monkeypatch
) -> None:
    api, client_id = one_link
    begin_flow = MqttLink.begin_flow
    strays: list[str] = []

    def begin_flow_after_a_stray_answer(link: MqttLink) -> Any:
        # Between the pool's choice and the flow's start, an answer nobody waits for arrives
        # on the link, in the format the flow is about to use: the link asks AWS for keys
        # itself, outside any flow, and waits until the answer has dirtied it.
        if not strays:
            fmt = link.describe()["nextFormat"]
            strays.append(fmt)
            link.client.publish(f"$aws/certificates/create/{fmt}", payloads.encode({}, fmt), qos=0)
            deadline = time.monotonic() + 5
            while not link.dirty and time.monotonic() < deadline:
                time.sleep(0.01)
            assert link.dirty, "the stray answer never reached the link"
        return begin_flow(link)

    monkeypatch.setattr(MqttLink, "begin_flow", begin_flow_after_a_stray_answer)
    certificates = len(emulator.registry.list_certificates())
    unproven_and_retryable(provision_serial(api, "STRAY", make_csr()[1]))
    # Refused before publishing: the stray's certificate is the only new one, no thing was made.
    assert len(emulator.registry.list_certificates()) == certificates + 1
    assert emulator.registry.describe_thing("demo-STRAY") is None
    # The link was replaced, and the retry is served by the fresh one.
    assert_link_replaced(api, client_id)
    assert_a_retry_provisions(api, "STRAY")


def test_an_answer_that_arrives_before_the_request_was_written_is_not_the_flows_answer(
    emulator: Emulator, one_link: tuple[Any, str], monkeypatch
) -> None:
    api, client_id = one_link
    publish, take = MqttLink._publish, MqttLink._take
    foreign: list[str] = []
    arrived = threading.Event()

    def take_noting_arrival(link: MqttLink, message: Any) -> bool:
        if message.topic in foreign:
            arrived.set()  # paho's loop thread has read it; it now waits for the link's lock
        return take(link, message)

    def publish_after_a_foreign_answer(link: MqttLink, topic: str, payload: bytes) -> Any:
        # The flow has set what it expects and holds the link's lock; its RegisterThing is not
        # written yet. Another request's answer reaches the connection in that window (as the
        # foreign answer of the issue did, 1.7 ms before the request reached the broker).
        if "/provisioning-templates/" in topic and not foreign:
            fmt = payloads.format_of(topic) or "json"
            foreign.append(topic + "/accepted")
            stray = payloads.encode({"thingName": "demo-FOREIGN", "deviceConfiguration": {}}, fmt)
            assert emulator.publish_to(link.client_id, foreign[0], stray)
            assert arrived.wait(5), "the foreign answer never reached the link"
        return publish(link, topic, payload)

    monkeypatch.setattr(MqttLink, "_take", take_noting_arrival)
    monkeypatch.setattr(MqttLink, "_publish", publish_after_a_foreign_answer)
    response = provision_serial(api, "REAL", make_csr()[1])
    assert foreign, "the flow never sent RegisterThing"
    # The foreign answer arrived before the request was written, so it cannot be this flow's:
    # the flow waited on and got its own.
    assert response.status_code == 201, response.text
    assert response.json()["thingName"] == "demo-REAL"
    assert response.json()["deviceConfiguration"]["serial"] == "REAL"
    # The connection that saw it is replaced before it serves again.
    assert_link_replaced(api, client_id)
    assert provision_serial(api, "AFTER").json()["thingName"] == "demo-AFTER"


def test_consecutive_flows_on_a_connection_alternate_json_and_cbor(one_link: tuple[Any, str]) -> None:
    api, _ = one_link
    formats = []
    for index in range(4):
        formats.append(api.get("/readyz").json()["connections"][0]["nextFormat"])
        # The emulator decodes a request in its topic's format: a 201 on a CBOR topic means
        # the request went out as CBOR and the CBOR answers were read.
        response = provision_serial(api, f"ALT-{index}", make_csr()[1] if index % 2 else None)
        assert response.status_code == 201, response.text
        assert response.json()["thingName"] == f"demo-ALT-{index}"
        assert response.json()["deviceConfiguration"]["serial"] == f"ALT-{index}"
    assert formats == ["json", "cbor", "json", "cbor"]
    connection = api.get("/readyz").json()["connections"][0]
    assert connection["subscriptions"] == 8 + 4  # certificate answers + one template, both formats
