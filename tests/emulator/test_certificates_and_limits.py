"""TLS client certificates against the registry, UNSUBSCRIBE, and malformed CBOR."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from iot_control import issue_pending_certificate, register_thing
from mqtt_support import MqttTestClient

from emulator import Emulator


def tls_client(emulator: Emulator, cert: Path, key: Path) -> MqttTestClient:
    return MqttTestClient(emulator.urls["mqtts"], ca_file=str(emulator.ca_path), cert=str(cert), key=str(key))


def test_issued_certificates_connect_only_once_active(tmp_path: Path) -> None:
    with Emulator(data_dir=tmp_path / "data", key_algorithm="ec", key_pool_size=1) as emulator:
        created, cert, key = issue_pending_certificate(emulator, tmp_path, "device")
        with pytest.raises((ConnectionError, TimeoutError, OSError)):
            tls_client(emulator, cert, key).connect()
        register_thing(emulator, created["certificateOwnershipToken"], "demo", {"SerialNumber": "ACT-1"})
        device = tls_client(emulator, cert, key).connect()  # ACTIVE now
        device.close()


def test_revoked_certificate_is_refused_even_when_pending_ones_may_connect(tmp_path: Path) -> None:
    with Emulator(
        data_dir=tmp_path / "data", key_algorithm="ec", key_pool_size=1, require_active_certificates=False
    ) as emulator:
        created, cert, key = issue_pending_certificate(emulator, tmp_path, "device")
        tls_client(emulator, cert, key).connect().close()  # pending may connect with the option off
        emulator.registry.set_certificate_status(created["certificateId"], "REVOKED")
        with pytest.raises((ConnectionError, TimeoutError, OSError)):
            tls_client(emulator, cert, key).connect()


def test_unsubscribe_stops_delivery(emulator: Emulator) -> None:
    client = MqttTestClient(emulator.urls["mqtt"]).connect()
    try:
        client.subscribe("news")
        client.client.unsubscribe("news")
        client.publish("other", b"sync")  # PUBACK ordering: the UNSUBSCRIBE was handled
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


def test_a_client_that_stops_reading_is_dropped_and_others_carry_on(tmp_path: Path) -> None:
    import socket

    from emulator import Limits

    with Emulator(
        data_dir=tmp_path, key_algorithm="ec", key_pool_size=1, limits=Limits(max_queued_bytes=256 * 1024)
    ) as emulator:
        port = emulator.ports["mqtt"]
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            connect = b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x04slow"
            sock.sendall(bytes([0x10, len(connect)]) + connect)
            assert sock.recv(4) == b"\x20\x02\x00\x00"
            subscribe = b"\x00\x01\x00\x04bulk\x00"
            sock.sendall(bytes([0x82, len(subscribe)]) + subscribe)
            publisher = MqttTestClient(emulator.urls["mqtt"]).connect()
            try:
                for _ in range(60):  # 60 x 64 KiB to a subscriber that never reads
                    publisher.publish("bulk", b"x" * 65536, qos=0)
                publisher.subscribe("ping")
                publisher.publish("ping", b"still served")
                assert publisher.expect().payload == b"still served"
            finally:
                publisher.close()
            deadline = time.monotonic() + 10
            while "slow" in emulator.connected_client_ids() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "slow" not in emulator.connected_client_ids()
        finally:
            sock.close()


def test_requests_in_flight_per_connection_are_bounded(tmp_path: Path) -> None:
    from emulator import Fault, Limits

    with Emulator(
        data_dir=tmp_path, key_algorithm="ec", key_pool_size=1, limits=Limits(max_requests_in_flight=2)
    ) as emulator:
        emulator.set_fault("create_keys_and_certificate", Fault(latency=(0.5, 0.5)))
        client = MqttTestClient(emulator.urls["mqtt"]).connect()
        try:
            topic = "$aws/certificates/create/json"
            client.subscribe(topic + "/accepted", topic + "/rejected")
            for _ in range(3):
                client.publish(topic, b"{}")
            answers = sorted(client.expect().topic.rsplit("/", 1)[1] for _ in range(3))
            assert answers == ["accepted", "accepted", "rejected"]
        finally:
            client.close()
