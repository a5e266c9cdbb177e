"""Faults as they really happen on QoS 1: an answer delivered twice, a request handled twice.

Over real paho clients against the real emulator; the spec parser is tested on its own.
"""

from __future__ import annotations

import time

import pytest
from mqtt_support import MqttTestClient

from emulator import Emulator, Fault
from emulator.errors import ConfigError
from emulator.faults import parse_spec

CSR_TOPIC = "$aws/certificates/create-from-csr/json"
KEYS_TOPIC = "$aws/certificates/create/json"
DEMO_TOPIC = "$aws/provisioning-templates/demo/provision/json"


@pytest.fixture
def client(emulator: Emulator):
    mqtt_client = MqttTestClient(emulator.urls["mqtt"]).connect()
    yield mqtt_client
    mqtt_client.close()


# -- the spec grammar --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "answer_twice", "process_twice"),
    [
        ("register_thing:answer_twice", True, False),
        ("register_thing:answer_twice=0.03", (0.03, 0.03), False),
        ("register_thing:answer_twice=0.02-0.05", (0.02, 0.05), False),
        ("create_keys_and_certificate:process_twice", False, True),
        ("*:process_twice=0.01-0.02,answer_twice", True, (0.01, 0.02)),
    ],
)
def test_fault_spec_reads_optional_repeat_delays(
    spec: str, answer_twice: object, process_twice: object
) -> None:
    _, fault = parse_spec(spec)
    assert (fault.answer_twice, fault.process_twice) == (answer_twice, process_twice)


@pytest.mark.parametrize(
    "spec",
    [
        "register_thing:answer_twice=soon",
        "register_thing:answer_twice=0.05-0.02",
        "register_thing:process_twice=-1",
    ],
)
def test_fault_spec_refuses_bad_repeat_delays(spec: str) -> None:
    with pytest.raises(ConfigError, match="bad value for"):
        parse_spec(spec)


def test_fault_api_takes_true_a_delay_or_a_range_and_refuses_the_rest() -> None:
    assert Fault(answer_twice=True).second_answer_delay() == 0.0
    assert Fault(answer_twice=0.03).second_answer_delay() == 0.03
    assert 0.02 <= (Fault(answer_twice=(0.02, 0.05)).second_answer_delay() or 0) <= 0.05
    assert Fault().second_answer_delay() is None and Fault().second_copy_delay() is None
    with pytest.raises(ConfigError, match="process_twice"):
        Fault(process_twice=(0.5, 0.1))
    with pytest.raises(ConfigError, match="answer_twice"):
        Fault(answer_twice=-0.1)


# -- answer_twice ------------------------------------------------------------------------------


def test_answer_twice_with_a_delay_repeats_the_same_answer_later(
    emulator: Emulator, client: MqttTestClient
) -> None:
    emulator.set_fault("create_keys_and_certificate", Fault(answer_twice=(0.3, 0.4), count=1))
    client.subscribe(KEYS_TOPIC + "/accepted")
    client.publish(KEYS_TOPIC, b"{}")
    first = client.expect()
    received = time.monotonic()
    second = client.expect(3)
    assert time.monotonic() - received >= 0.25  # paho's own delivery adds jitter, not less
    assert first.payload == second.payload


def test_a_late_duplicate_can_arrive_after_the_next_requests_answer(
    emulator: Emulator, client: MqttTestClient
) -> None:
    # What a client with one request in flight per connection must survive: the duplicate of
    # answer A arrives while it waits for answer B, on the same topic.
    emulator.set_fault("create_keys_and_certificate", Fault(answer_twice=0.6, count=1))
    client.subscribe(KEYS_TOPIC + "/accepted")
    client.publish(KEYS_TOPIC, b"{}")
    answer_a = client.expect().json()
    client.publish(KEYS_TOPIC, b"{}")
    answer_b = client.expect().json()
    duplicate = client.expect(3).json()
    assert answer_a["certificateId"] != answer_b["certificateId"]
    assert duplicate == answer_a


# -- process_twice -----------------------------------------------------------------------------


def test_process_twice_on_create_keys_issues_two_certificates_and_answers_both(
    emulator: Emulator, client: MqttTestClient
) -> None:
    emulator.set_fault("create_keys_and_certificate", Fault(process_twice=True, count=1))
    client.subscribe(KEYS_TOPIC + "/accepted", KEYS_TOPIC + "/rejected")
    client.publish(KEYS_TOPIC, b"{}")
    answers = [client.expect(), client.expect()]
    client.expect_nothing(0.3)
    assert {m.topic for m in answers} == {KEYS_TOPIC + "/accepted"}
    ids = {m.json()["certificateId"] for m in answers}
    assert len(ids) == 2
    for certificate_id in ids:
        assert emulator.registry.certificate_status(certificate_id) == "PENDING_ACTIVATION"


def test_process_twice_on_create_from_csr_issues_two_certificates_for_one_key(
    emulator: Emulator, client: MqttTestClient, device_csr
) -> None:
    emulator.set_fault("create_certificate_from_csr", Fault(process_twice=0.05, count=1))
    client.subscribe(CSR_TOPIC + "/accepted", CSR_TOPIC + "/rejected")
    client.publish(CSR_TOPIC, {"certificateSigningRequest": device_csr[1]})
    first, second = client.expect().json(), client.expect().json()
    assert first["certificateId"] != second["certificateId"]
    assert first["certificateOwnershipToken"] != second["certificateOwnershipToken"]


def test_process_twice_on_register_thing_spends_the_token_once(
    emulator: Emulator, client: MqttTestClient
) -> None:
    _, created = client.request(KEYS_TOPIC, {})
    emulator.set_fault("register_thing", Fault(process_twice=0.2, count=1))
    client.subscribe(DEMO_TOPIC + "/accepted", DEMO_TOPIC + "/rejected")
    client.publish(
        DEMO_TOPIC,
        {
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": "TWICE"},
        },
    )
    first, second = client.expect(), client.expect()
    assert first.topic == DEMO_TOPIC + "/accepted"
    assert first.json()["thingName"] == "demo-TWICE"
    assert second.topic == DEMO_TOPIC + "/rejected"
    assert second.json()["errorCode"] == "InvalidCertificateOwnershipToken"
    assert emulator.registry.certificate_status(created["certificateId"]) == "ACTIVE"
    assert [use["thingName"] for use in emulator.registry.list_template_uses()] == ["demo-TWICE"]


def test_process_twice_at_once_on_register_thing_accepts_exactly_one_copy(
    emulator: Emulator, client: MqttTestClient
) -> None:
    _, created = client.request(KEYS_TOPIC, {})
    emulator.set_fault("register_thing", Fault(process_twice=True, count=1))
    client.subscribe(DEMO_TOPIC + "/accepted", DEMO_TOPIC + "/rejected")
    client.publish(
        DEMO_TOPIC,
        {
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": "RACE"},
        },
    )
    outcomes = sorted(client.expect().topic.rsplit("/", 1)[1] for _ in range(2))
    assert outcomes == ["accepted", "rejected"]
    assert len(emulator.registry.list_template_uses()) == 1
