"""Fleet provisioning over MQTT, with plain paho clients: both flows, delivery, errors, faults."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hook_server import HookServer
from mqtt_support import CSR_TOPIC, DEMO_TOPIC, KEYS_TOPIC, MqttTestClient
from repository import DEMO_TEMPLATE

from emulator import Emulator, Fault


def public_key_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_csr_flow_issues_a_certificate_for_the_csr_key_and_registers_the_thing(
    emulator: Emulator, client: MqttTestClient, device_csr
) -> None:
    key_pem, csr_pem = device_csr
    outcome, created = client.request(CSR_TOPIC, {"certificateSigningRequest": csr_pem})
    assert outcome == "accepted"
    certificate = x509.load_pem_x509_certificate(created["certificatePem"].encode())
    device_key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert public_key_der(certificate.public_key()) == public_key_der(device_key.public_key())
    assert (
        created["certificateId"]
        == hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    )
    assert emulator.registry.certificate_status(created["certificateId"]) == "PENDING_ACTIVATION"

    outcome, registered = client.request(
        DEMO_TOPIC,
        {
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": "SN-1", "DeviceLocation": "line-4"},
        },
    )
    assert outcome == "accepted"
    assert registered == {
        "thingName": "demo-SN-1",
        "deviceConfiguration": {"location": "line-4", "serial": "SN-1"},
    }
    thing = emulator.registry.describe_thing("demo-SN-1")
    assert thing is not None and created["certificateId"] in thing["principals"]
    assert emulator.registry.certificate_status(created["certificateId"]) == "ACTIVE"


def test_create_keys_and_certificate_returns_rsa_2048_pkcs1_keys(tmp_path: Path) -> None:
    with Emulator(data_dir=tmp_path, key_algorithm="rsa", key_pool_size=1) as emulator:
        client = MqttTestClient(emulator.urls["mqtt"]).connect()
        try:
            outcome, created = client.request(KEYS_TOPIC, {})
        finally:
            client.close()
    assert outcome == "accepted"
    assert created["privateKey"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    key = serialization.load_pem_private_key(created["privateKey"].encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    certificate = x509.load_pem_x509_certificate(created["certificatePem"].encode())
    assert certificate.subject.rfc4514_string() == "CN=AWS IoT Certificate"
    assert public_key_der(certificate.public_key()) == public_key_der(key.public_key())


def test_answer_goes_only_to_the_publishing_connection(emulator: Emulator, client: MqttTestClient) -> None:
    bystander = MqttTestClient(emulator.urls["mqtt"]).connect()
    try:
        bystander.subscribe(KEYS_TOPIC + "/accepted", KEYS_TOPIC + "/rejected")
        outcome, _ = client.request(KEYS_TOPIC, b"")
        assert outcome == "accepted"
        bystander.expect_nothing(0.5)
    finally:
        bystander.close()


def test_no_answer_without_a_subscription(client: MqttTestClient) -> None:
    client.publish(KEYS_TOPIC, b"{}")
    client.expect_nothing(0.5)


def test_cbor_topics_answer_in_cbor(client: MqttTestClient, device_csr) -> None:
    topic = "$aws/certificates/create-from-csr/cbor"
    client.subscribe(topic + "/accepted", topic + "/rejected")
    client.publish(topic, cbor2.dumps({"certificateSigningRequest": device_csr[1]}))
    message = client.expect()
    assert message.topic == topic + "/accepted"
    assert set(cbor2.loads(message.payload)) == {
        "certificateId",
        "certificatePem",
        "certificateOwnershipToken",
    }


def test_capitalised_parameters_are_read_as_aws_does(client: MqttTestClient) -> None:
    _, created = client.request(KEYS_TOPIC, {})
    outcome, registered = client.request(
        DEMO_TOPIC,
        {
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "Parameters": {"SerialNumber": "CAP-1"},
        },
    )
    assert (outcome, registered["thingName"]) == ("accepted", "demo-CAP-1")


def register(client: MqttTestClient, body: dict, topic: str = DEMO_TOPIC) -> tuple[str, dict]:
    return client.request(topic, body)


def test_unknown_template_is_rejected_with_not_found(client: MqttTestClient) -> None:
    _, created = client.request(KEYS_TOPIC, {})
    outcome, body = register(
        client,
        {"certificateOwnershipToken": created["certificateOwnershipToken"]},
        "$aws/provisioning-templates/nope/provision/json",
    )
    assert outcome == "rejected"
    assert body == {
        "statusCode": 404,
        "errorCode": "ResourceNotFoundException",
        "errorMessage": "template 'nope' does not exist",
    }


def test_missing_parameter_is_rejected_and_the_token_stays_usable(client: MqttTestClient) -> None:
    _, created = client.request(KEYS_TOPIC, {})
    token = created["certificateOwnershipToken"]
    outcome, body = register(client, {"certificateOwnershipToken": token})
    assert outcome == "rejected" and "SerialNumber" in body["errorMessage"]
    assert body["statusCode"] == 400
    outcome, _ = register(
        client, {"certificateOwnershipToken": token, "parameters": {"SerialNumber": "RETRY"}}
    )
    assert outcome == "accepted"
    outcome, body = register(
        client, {"certificateOwnershipToken": token, "parameters": {"SerialNumber": "AGAIN"}}
    )
    assert (outcome, body["errorCode"]) == ("rejected", "InvalidCertificateOwnershipToken")


def test_bad_token_and_bad_payloads_get_precise_rejections(client: MqttTestClient) -> None:
    outcome, body = register(
        client, {"certificateOwnershipToken": "forged", "parameters": {"SerialNumber": "X"}}
    )
    assert (outcome, body["statusCode"], body["errorCode"]) == (
        "rejected",
        400,
        "InvalidCertificateOwnershipToken",
    )
    outcome, body = client.request(DEMO_TOPIC, b"{not json")
    assert outcome == "rejected" and "not valid JSON" in body["errorMessage"]
    outcome, body = client.request(DEMO_TOPIC, b"[1, 2]")
    assert outcome == "rejected" and "must be a JSON object" in body["errorMessage"]
    _, created = client.request(KEYS_TOPIC, {})
    outcome, body = register(
        client,
        {
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": 42},
        },
    )
    assert outcome == "rejected" and "parameters.SerialNumber" in body["errorMessage"]
    assert created["certificateOwnershipToken"] not in json.dumps(body)


def test_a_csr_that_is_not_a_csr_is_rejected(client: MqttTestClient) -> None:
    outcome, body = client.request(CSR_TOPIC, {"certificateSigningRequest": "hello"})
    assert outcome == "rejected" and "certificate signing request" in body["errorMessage"]
    outcome, body = client.request(CSR_TOPIC, {"certificateSigningRequest": 7})
    assert outcome == "rejected" and "must be a string" in body["errorMessage"]


def test_tokens_expire_after_an_hour_on_the_injected_clock(tmp_path: Path) -> None:
    now = [1_000_000.0]
    with Emulator(data_dir=tmp_path, key_algorithm="ec", key_pool_size=1, clock=lambda: now[0]) as emulator:
        client = MqttTestClient(emulator.urls["mqtt"]).connect()
        try:
            _, created = client.request(KEYS_TOPIC, {})
            now[0] += 3601
            outcome, body = register(
                client,
                {
                    "certificateOwnershipToken": created["certificateOwnershipToken"],
                    "parameters": {"SerialNumber": "LATE"},
                },
            )
            assert (outcome, body["errorCode"]) == ("rejected", "InvalidCertificateOwnershipToken")
            emulator.registry.expire_pending()  # AWS deletes the unredeemed certificate
            assert emulator.registry.certificate_status(created["certificateId"]) is None
        finally:
            client.close()


@pytest.mark.parametrize("allow", [True, False])
def test_pre_provisioning_hook_is_honoured(tmp_path: Path, templates_dir: Path, allow: bool) -> None:
    with HookServer() as hook:
        hook.answer(200, {"allowProvisioning": allow, "parameterOverrides": {"DeviceLocation": "from-hook"}})
        demo = json.loads(DEMO_TEMPLATE.read_text())
        hooked = {"templateBody": demo, "preProvisioningHook": {"url": hook.url}}
        (templates_dir / "hooked.json").write_text(json.dumps(hooked))
        with Emulator(
            data_dir=tmp_path / "data", templates_dir=templates_dir, key_algorithm="ec", key_pool_size=1
        ) as emulator:
            client = MqttTestClient(emulator.urls["mqtt"]).connect()
            try:
                _, created = client.request(KEYS_TOPIC, {})
                outcome, body = register(
                    client,
                    {
                        "certificateOwnershipToken": created["certificateOwnershipToken"],
                        "parameters": {"SerialNumber": "H1"},
                    },
                    "$aws/provisioning-templates/hooked/provision/json",
                )
            finally:
                client.close()
    assert hook.events[0]["certificateId"] == created["certificateId"]
    assert hook.events[0]["parameters"] == {"SerialNumber": "H1"}
    if allow:
        assert outcome == "accepted"
        assert body["deviceConfiguration"]["location"] == "from-hook"
    else:
        assert (outcome, body["statusCode"], body["errorCode"]) == ("rejected", 403, "ACCESS_DENIED")


# -- faults ------------------------------------------------------------------------------------


def test_fault_reject_answers_with_the_chosen_codes(emulator: Emulator, client: MqttTestClient) -> None:
    emulator.set_fault(
        "create_keys_and_certificate", Fault(reject=(503, "ServiceUnavailable", "try later"), count=1)
    )
    outcome, body = client.request(KEYS_TOPIC, {})
    assert (outcome, body) == (
        "rejected",
        {"statusCode": 503, "errorCode": "ServiceUnavailable", "errorMessage": "try later"},
    )
    assert client.request(KEYS_TOPIC, {})[0] == "accepted"  # count=1: disarmed


def test_fault_latency_delays_the_answer(emulator: Emulator, client: MqttTestClient) -> None:
    emulator.set_fault("*", Fault(latency=(0.3, 0.3)))
    started = time.monotonic()
    assert client.request(KEYS_TOPIC, {})[0] == "accepted"
    assert time.monotonic() - started >= 0.3


def test_fault_never_answer_and_late_answer(emulator: Emulator, client: MqttTestClient) -> None:
    emulator.set_fault("create_keys_and_certificate", Fault(never_answer=True, count=1))
    client.subscribe(KEYS_TOPIC + "/accepted", KEYS_TOPIC + "/rejected")
    client.publish(KEYS_TOPIC, b"{}")
    client.expect_nothing(0.5)
    emulator.set_fault("create_keys_and_certificate", Fault(late=0.6, count=1))
    client.publish(KEYS_TOPIC, b"{}")
    client.expect_nothing(0.3)
    assert client.expect(3).topic == KEYS_TOPIC + "/accepted"


def test_fault_answer_twice_sends_two_identical_answers(emulator: Emulator, client: MqttTestClient) -> None:
    emulator.set_fault("create_keys_and_certificate", Fault(answer_twice=True, count=1))
    client.subscribe(KEYS_TOPIC + "/accepted")
    client.publish(KEYS_TOPIC, b"{}")
    first, second = client.expect(), client.expect()
    assert first.payload == second.payload


def test_fault_drop_connection_closes_the_requesting_client_only(
    emulator: Emulator, client: MqttTestClient
) -> None:
    other = MqttTestClient(emulator.urls["mqtt"]).connect()
    client.client.reconnect_delay_set(30, 60)
    try:
        emulator.set_fault("create_keys_and_certificate", Fault(drop_connection=True, count=1))
        client.subscribe(KEYS_TOPIC + "/accepted")
        client.publish(KEYS_TOPIC, b"{}")
        assert client.disconnected.wait(5)
        assert other.request(KEYS_TOPIC, {})[0] == "accepted"
    finally:
        other.close()


def test_fault_throttle_rejects_beyond_the_bucket(emulator: Emulator, client: MqttTestClient) -> None:
    emulator.set_fault("create_keys_and_certificate", Fault(throttle=(0.001, 2)))
    outcomes = [client.request(KEYS_TOPIC, {}) for _ in range(3)]
    assert [o for o, _ in outcomes] == ["accepted", "accepted", "rejected"]
    assert outcomes[2][1]["statusCode"] == 429
    assert outcomes[2][1]["errorCode"] == "ThrottlingException"


def test_key_generation_does_not_stall_other_clients(tmp_path: Path) -> None:
    with Emulator(data_dir=tmp_path, key_algorithm="rsa", key_pool_size=1) as emulator:
        busy = [MqttTestClient(emulator.urls["mqtt"]).connect() for _ in range(4)]
        chat = MqttTestClient(emulator.urls["mqtt"]).connect()
        try:
            for client in busy:
                client.subscribe(KEYS_TOPIC + "/accepted")
                for _ in range(5):
                    client.publish(KEYS_TOPIC, b"{}", qos=0)
            chat.subscribe("chat")
            chat.publish("chat", b"hi")  # served while ~20 RSA keys are being generated
            assert chat.expect(2).payload == b"hi"
            for client in busy:
                for _ in range(5):
                    assert client.expect(20).topic.endswith("/accepted")
        finally:
            for client in [*busy, chat]:
                client.close()
