"""TLS client certificates against the registry, UNSUBSCRIBE, and malformed CBOR."""

from __future__ import annotations

from pathlib import Path

import pytest
from device_keys import make_csr
from mqtt_support import MqttTestClient

from emulator import Emulator

CSR_TOPIC = "$aws/certificates/create-from-csr/json"


def tls_client(emulator: Emulator, cert: Path, key: Path) -> MqttTestClient:
    return MqttTestClient(emulator.urls["mqtts"], ca_file=str(emulator.ca_path), cert=str(cert),
                          key=str(key))


def issue_pending_certificate(emulator: Emulator, tmp_path: Path) -> tuple[dict, Path, Path]:
    key_pem, csr_pem = make_csr()
    client = MqttTestClient(emulator.urls["mqtt"]).connect()
    try:
        outcome, created = client.request(CSR_TOPIC, {"certificateSigningRequest": csr_pem})
    finally:
        client.close()
    assert outcome == "accepted"
    cert_path, key_path = tmp_path / "device.pem", tmp_path / "device.key"
    cert_path.write_text(created["certificatePem"])
    key_path.write_text(key_pem)
    return created, cert_path, key_path


def test_issued_certificates_connect_only_once_active_when_required(tmp_path: Path) -> None:
    with Emulator(data_dir=tmp_path / "data", key_algorithm="ec", key_pool_size=1,
                  require_active_certificates=True) as emulator:
        created, cert, key = issue_pending_certificate(emulator, tmp_path)
        with pytest.raises((ConnectionError, TimeoutError, OSError)):
            tls_client(emulator, cert, key).connect()
        client = MqttTestClient(emulator.urls["mqtt"]).connect()
        try:
            outcome, _ = client.request("$aws/provisioning-templates/demo/provision/json", {
                "certificateOwnershipToken": created["certificateOwnershipToken"],
                "parameters": {"SerialNumber": "ACT-1"}})
        finally:
            client.close()
        assert outcome == "accepted"
        device = tls_client(emulator, cert, key).connect()   # ACTIVE now
        device.close()


def test_revoked_certificate_is_refused(tmp_path: Path) -> None:
    with Emulator(data_dir=tmp_path / "data", key_algorithm="ec", key_pool_size=1) as emulator:
        created, cert, key = issue_pending_certificate(emulator, tmp_path)
        tls_client(emulator, cert, key).connect().close()   # pending is allowed by default
        emulator.registry.set_certificate_status(created["certificateId"], "REVOKED")
        with pytest.raises((ConnectionError, TimeoutError, OSError)):
            tls_client(emulator, cert, key).connect()


def test_unsubscribe_stops_delivery(emulator: Emulator) -> None:
    client = MqttTestClient(emulator.urls["mqtt"]).connect()
    try:
        client.subscribe("news")
        client.client.unsubscribe("news")
        client.publish("other", b"sync")      # PUBACK ordering: the UNSUBSCRIBE was handled
        client.publish("news", b"x")
        client.expect_nothing(0.3)
    finally:
        client.close()


def test_malformed_cbor_is_rejected_in_cbor(emulator: Emulator) -> None:
    import cbor2

    topic = "$aws/certificates/create-from-csr/cbor"
    client = MqttTestClient(emulator.urls["mqtt"]).connect()
    try:
        client.subscribe(topic + "/accepted", topic + "/rejected")
        client.publish(topic, b"\xff\x00\x13")
        message = client.expect()
        assert message.topic == topic + "/rejected"
        assert "not valid CBOR" in cbor2.loads(message.payload)["errorMessage"]
    finally:
        client.close()
