"""Certificate status enforced on the wire, as AWS IoT does: a device connected over mutual TLS
loses its connection soon after its certificate leaves ACTIVE through the control plane, and
cannot connect again; unredeemed certificates from Create* are deleted after the token's
lifetime. Real sockets throughout: boto3 -> HTTP -> emulator -> TLS -> paho."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from device_keys import make_csr
from iot_control import (
    connect_refused,
    create_certificate_from_csr,
    iot_client,
    issue_pending_certificate,
    provision_device,
)
from mqtt_support import MqttTestClient
from paho.mqtt.enums import CallbackAPIVersion

from emulator import Emulator

WITHIN = 2.0  # the issue's bound from revoke to disconnect


@pytest.mark.parametrize("new_status", ["REVOKED", "INACTIVE"])
def test_a_device_loses_its_connection_within_2_s_and_cannot_reconnect(
    emulator: Emulator, tmp_path: Path, new_status: str
) -> None:
    device = provision_device(emulator, tmp_path, f"W-{new_status}")
    connected = device.client(emulator).connect()
    bystander = MqttTestClient(
        emulator.urls["mqtts"],
        ca_file=str(emulator.ca_path),
        cert=str(emulator.claim_cert_path),
        key=str(emulator.claim_key_path),
    ).connect()
    try:
        iot = iot_client(emulator)
        asked_at = time.monotonic()
        iot.update_certificate(certificateId=device.certificate_id, newStatus=new_status)
        answered_at = time.monotonic()
        assert connected.disconnected.wait(5), f"still connected 5 s after {new_status}"
        gone_at = time.monotonic()
        # The default delay is 1 s: not before it, and within 2 s of the control plane's answer.
        assert gone_at - asked_at >= 1.0 and gone_at - answered_at < WITHIN, (
            f"disconnected {gone_at - answered_at:.2f} s after {new_status} was answered"
        )
        assert connect_refused(device.client(emulator)) == "closed by the server before CONNACK"
        assert not bystander.disconnected.is_set()  # other certificates keep their connections
    finally:
        connected.close()
        bystander.close()


def test_a_suspended_certificate_connects_again_once_reactivated(emulator: Emulator, tmp_path: Path) -> None:
    device = provision_device(emulator, tmp_path, "W-SUSPEND")
    iot = iot_client(emulator)
    iot.update_certificate(certificateId=device.certificate_id, newStatus="INACTIVE")
    assert connect_refused(device.client(emulator))
    iot.update_certificate(certificateId=device.certificate_id, newStatus="ACTIVE")
    device.client(emulator).connect().close()


def test_reactivated_within_the_delay_the_connection_stays(tmp_path: Path) -> None:
    with Emulator(data_dir=tmp_path / "data", key_algorithm="ec", key_pool_size=1) as emulator:
        device = provision_device(emulator, tmp_path, "W-BLIP")
        connected = device.client(emulator).connect()
        try:
            emulator.registry.set_certificate_status(device.certificate_id, "INACTIVE")
            emulator.registry.set_certificate_status(device.certificate_id, "ACTIVE")
            assert not connected.disconnected.wait(1.5)  # checked again after 1 s: ACTIVE, so kept
        finally:
            connected.close()


def test_the_delay_is_configurable_and_mqtt5_clients_are_told_not_authorized(tmp_path: Path) -> None:
    with Emulator(
        data_dir=tmp_path / "data", key_algorithm="ec", key_pool_size=1, certificate_disconnect_delay=0.1
    ) as emulator:
        device = provision_device(emulator, tmp_path, "W-MQTT5")
        reasons: list[Any] = []
        gone = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="w-mqtt5", protocol=mqtt.MQTTv5)
        client.tls_set(
            ca_certs=str(emulator.ca_path), certfile=str(device.cert_path), keyfile=str(device.key_path)
        )
        client.on_disconnect = lambda c, u, flags, reason, props: (reasons.append(reason), gone.set())
        connected = threading.Event()
        client.on_connect = lambda c, u, flags, reason, props: connected.set()
        client.connect("127.0.0.1", emulator.ports["mqtts"])
        client.loop_start()
        try:
            assert connected.wait(5)
            iot_client(emulator, tls=True).update_certificate(
                certificateId=device.certificate_id, newStatus="REVOKED"
            )
            revoked_at = time.monotonic()
            assert gone.wait(5)
            assert time.monotonic() - revoked_at < 0.8
            assert reasons[0].value == 0x87  # Not authorized
        finally:
            client.disconnect()
            client.loop_stop()
            client._reset_sockets()


def test_a_pending_certificate_cannot_connect(emulator: Emulator, tmp_path: Path) -> None:
    _, cert, key = issue_pending_certificate(emulator, tmp_path, "pending")
    pending = MqttTestClient(
        emulator.urls["mqtts"], ca_file=str(emulator.ca_path), cert=str(cert), key=str(key)
    )
    assert connect_refused(pending) == "closed by the server before CONNACK"


def test_unredeemed_certificates_are_deleted_after_the_token_lifetime(tmp_path: Path) -> None:
    with Emulator(
        data_dir=tmp_path / "data", key_algorithm="ec", key_pool_size=1, token_lifetime=0.5
    ) as emulator:
        abandoned = create_certificate_from_csr(emulator, make_csr()[1])
        kept = provision_device(emulator, tmp_path, "W-KEPT")  # redeemed at once: ACTIVE, stays
        iot = iot_client(emulator)
        description = iot.describe_certificate(certificateId=abandoned["certificateId"])
        assert description["certificateDescription"]["status"] == "PENDING_ACTIVATION"
        deadline = time.monotonic() + 3
        # The sweeper deletes it by itself: the registry is read directly, no API call sweeps.
        while emulator.registry.certificate_status(abandoned["certificateId"]) is not None:
            assert time.monotonic() < deadline, "not deleted within 3 s of a 0.5 s token lifetime"
            time.sleep(0.05)
        with pytest.raises(iot.exceptions.ResourceNotFoundException):
            iot.describe_certificate(certificateId=abandoned["certificateId"])
        assert emulator.registry.certificate_status(kept.certificate_id) == "ACTIVE"
