"""Faults as they really happen on QoS 1: an answer delivered twice, a request handled twice.

Over real paho clients against the real emulator; the spec parser is tested on its own.
"""

from __future__ import annotations

import queue
import time
from collections import Counter

import pytest
from mqtt_support import CSR_TOPIC, DEMO_TOPIC, KEYS_TOPIC, MqttTestClient

from emulator import Emulator, Fault
from emulator.errors import ConfigError
from emulator.fleet.faults import Faults, parse_spec

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


# -- a mix of faults by chance -----------------------------------------------------------------


def test_fault_spec_reads_a_chance_and_refuses_one_outside_zero_to_one() -> None:
    assert parse_spec("register_thing:late=3,chance=0.05")[1] == Fault(late=3.0, chance=0.05)
    for spec in ("register_thing:late=3,chance=0", "register_thing:late=3,chance=1.5"):
        with pytest.raises(ConfigError, match="chance"):
            parse_spec(spec)


def test_a_mix_gives_each_request_at_most_one_fault_in_proportion() -> None:
    faults = Faults()
    faults.add("register_thing", Fault(never_answer=True, chance=0.2))
    faults.add("register_thing", Fault(drop_connection=True, chance=0.3))
    met = Counter(
        "never" if p.fault and p.fault.never_answer else "drop" if p.fault else "none"
        for p in (faults.plan("register_thing") for _ in range(4000))
    )
    assert 0.15 < met["never"] / 4000 < 0.25 and 0.25 < met["drop"] / 4000 < 0.35
    assert faults.plan("create_certificate_from_csr").fault is None  # other operations untouched


def test_a_mix_refuses_chances_over_one_a_fault_without_chance_and_throttle() -> None:
    faults = Faults()
    faults.add("*", Fault(late=1.0, chance=0.7))
    with pytest.raises(ConfigError, match="sum to 1.2"):
        faults.add("*", Fault(never_answer=True, chance=0.5))
    with pytest.raises(ConfigError, match="needs a chance"):
        faults.add("*", Fault(never_answer=True))
    with pytest.raises(ConfigError, match="needs a chance"):
        faults.add("*", Fault(throttle=(1, 1), chance=0.1))
    faults.set("*", Fault(never_answer=True))  # set replaces the mix
    with pytest.raises(ConfigError, match="applies always"):
        faults.add("*", Fault(late=1.0, chance=0.1))


def test_a_fault_mix_reaches_real_clients(emulator: Emulator, client) -> None:
    emulator.add_fault("create_keys_and_certificate", Fault(never_answer=True, chance=0.5))
    client.subscribe(KEYS_TOPIC + "/accepted")
    answered = 0
    for _ in range(30):
        client.publish(KEYS_TOPIC, "{}")
        try:
            answered += client.expect(timeout=0.2).topic == KEYS_TOPIC + "/accepted"
        except queue.Empty:
            pass
    assert 5 <= answered <= 25  # about half answered, half withheld (p < 1e-4 outside)


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
