"""Conformance: AWS's own device SDK (awsiotsdk on awscrt) provisions against the emulator.

Our other tests speak to the emulator with paho and with our own reading of the wire contract; these
run `awsiot.iotidentity.IotIdentityClientV2`, the client AWS ships and keeps current, over the two
transports a device uses: mutual TLS with the claim certificate, and WebSocket+TLS signed with SigV4
(with and without a session token, which awscrt leaves out of the signature as AWS IoT requires).
Both of the SDK's clients run: the MQTT 3.1.1 `mqtt_connection_builder` and the MQTT 5
`mqtt5_client_builder` (what AWS's current fleet-provisioning sample uses).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from awscrt import auth, mqtt, mqtt5, mqtt_request_response
from awscrt.exceptions import AwsCrtError
from awsiot import V2ServiceException, iotidentity, mqtt5_client_builder, mqtt_connection_builder
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator

WAIT = 10.0
TEMPLATE = "demo"


def _client_id() -> str:
    return f"conformance-{uuid.uuid4().hex[:12]}"


SESSION_TOKEN = "FQoGZXIvYXdzEXAMPLESESSIONTOKEN//+="


def mtls_arguments(emulator: Emulator) -> dict[str, Any]:
    """The SDK builders' arguments for mutual TLS with the claim certificate (MQTT 3 and 5 alike)."""
    return {
        "endpoint": "localhost",
        "port": emulator.ports["mqtts"],
        "cert_filepath": str(emulator.claim_cert_path),
        "pri_key_filepath": str(emulator.claim_key_path),
        "ca_filepath": str(emulator.ca_path),
        "client_id": _client_id(),
    }


def sigv4_arguments(
    emulator: Emulator, session_token: str | None, secret: str = DEFAULT_SECRET_ACCESS_KEY
) -> dict[str, Any]:
    """The SDK builders' arguments for WebSockets signed with SigV4 (MQTT 3 and 5 alike)."""
    return {
        "region": "us-east-1",
        "credentials_provider": auth.AwsCredentialsProvider.new_static(
            DEFAULT_ACCESS_KEY_ID, secret, session_token=session_token
        ),
        "endpoint": "localhost",
        "port": emulator.ports["wss"],
        "ca_filepath": str(emulator.ca_path),
        "client_id": _client_id(),
    }


def mtls_connection(emulator: Emulator) -> mqtt.Connection:
    return mqtt_connection_builder.mtls_from_path(**mtls_arguments(emulator), clean_session=True)


def _websocket_connection(
    emulator: Emulator, session_token: str | None, secret: str = DEFAULT_SECRET_ACCESS_KEY
) -> mqtt.Connection:
    return mqtt_connection_builder.websockets_with_default_aws_signing(
        **sigv4_arguments(emulator, session_token, secret), clean_session=True
    )


def sigv4_connection(emulator: Emulator) -> mqtt.Connection:
    return _websocket_connection(emulator, session_token=None)


def sigv4_session_token_connection(emulator: Emulator) -> mqtt.Connection:
    # Temporary credentials: awscrt adds X-Amz-Security-Token to the URL but not to the signature.
    return _websocket_connection(emulator, session_token=SESSION_TOKEN)


class Mqtt5Lifecycle:
    """The MQTT 5 client's lifecycle callbacks (awscrt threads) turned into waitable events."""

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.stopped = threading.Event()
        self.failure: Exception | None = None
        self.connack: mqtt5.ConnackPacket | None = None

    def kwargs(self) -> dict[str, Callable[..., None]]:
        return {
            "on_lifecycle_connection_success": self._success,
            "on_lifecycle_connection_failure": self._failure,
            "on_lifecycle_stopped": lambda data: self.stopped.set(),
        }

    def _success(self, data: mqtt5.LifecycleConnectSuccessData) -> None:
        self.connack = data.connack_packet
        self.connected.set()

    def _failure(self, data: mqtt5.LifecycleConnectFailureData) -> None:
        self.failure = data.exception
        self.connected.set()


def mtls_client5(emulator: Emulator, lifecycle: Mqtt5Lifecycle) -> mqtt5.Client:
    return mqtt5_client_builder.mtls_from_path(**mtls_arguments(emulator), **lifecycle.kwargs())


def sigv4_session_token_client5(emulator: Emulator, lifecycle: Mqtt5Lifecycle) -> mqtt5.Client:
    return mqtt5_client_builder.websockets_with_default_aws_signing(
        **sigv4_arguments(emulator, SESSION_TOKEN), **lifecycle.kwargs()
    )


TRANSPORTS: dict[str, Callable[[Emulator], mqtt.Connection]] = {
    "mtls": mtls_connection,
    "wss-sigv4": sigv4_connection,
    "wss-sigv4-session-token": sigv4_session_token_connection,
}
TRANSPORTS5: dict[str, Callable[[Emulator, Mqtt5Lifecycle], mqtt5.Client]] = {
    "mqtt5-mtls": mtls_client5,
    "mqtt5-wss-sigv4-session-token": sigv4_session_token_client5,
}
ALL_TRANSPORTS = [*TRANSPORTS, *TRANSPORTS5]


def _identity_options() -> mqtt_request_response.ClientOptions:
    return mqtt_request_response.ClientOptions(
        max_request_response_subscriptions=2,
        max_streaming_subscriptions=0,
        operation_timeout_in_seconds=int(WAIT),
    )


@contextmanager
def identity_client(emulator: Emulator, transport: str) -> Iterator[iotidentity.IotIdentityClientV2]:
    if transport in TRANSPORTS5:
        with mqtt5_client(emulator, transport) as client:
            yield iotidentity.IotIdentityClientV2(client, _identity_options())
        return
    connection = TRANSPORTS[transport](emulator)
    connection.connect().result(timeout=WAIT)
    try:
        yield iotidentity.IotIdentityClientV2(connection, _identity_options())
    finally:
        connection.disconnect().result(timeout=WAIT)


@contextmanager
def mqtt5_client(
    emulator: Emulator, transport: str, lifecycle: Mqtt5Lifecycle | None = None
) -> Iterator[mqtt5.Client]:
    lifecycle = lifecycle or Mqtt5Lifecycle()
    client = TRANSPORTS5[transport](emulator, lifecycle)
    client.start()
    try:
        assert lifecycle.connected.wait(WAIT), "no CONNACK"
        if lifecycle.failure is not None:
            raise lifecycle.failure
        yield client
    finally:
        client.stop()
        assert lifecycle.stopped.wait(WAIT)


def _serial() -> str:
    return uuid.uuid4().hex[:10]


def _parsed_certificate(certificate_pem: str, certificate_id: str) -> x509.Certificate:
    certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    der = certificate.public_bytes(serialization.Encoding.DER)
    # AWS IoT's certificate ID is the SHA-256 of the certificate's DER encoding.
    assert certificate_id == hashlib.sha256(der).hexdigest()
    return certificate


def _public_key_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _certificate_status(emulator: Emulator, certificate_id: str) -> str | None:
    certificate = emulator.registry.describe_certificate(certificate_id)
    return certificate["status"] if certificate else None


def _register_and_check(
    emulator: Emulator, identity: iotidentity.IotIdentityClientV2, certificate_id: str, ownership_token: str
) -> None:
    assert _certificate_status(emulator, certificate_id) == "PENDING_ACTIVATION"
    serial = _serial()
    registered = identity.register_thing(
        iotidentity.RegisterThingRequest(
            template_name=TEMPLATE,
            certificate_ownership_token=ownership_token,
            parameters={"SerialNumber": serial, "DeviceLocation": "line-3"},
        )
    ).result(timeout=WAIT)

    assert registered.thing_name == f"demo-{serial}"
    assert registered.device_configuration == {"location": "line-3", "serial": serial}
    thing = emulator.registry.describe_thing(f"demo-{serial}")
    assert thing is not None
    assert certificate_id in thing["principals"]
    assert thing["attributes"] == {"serial": serial, "location": "line-3"}
    assert _certificate_status(emulator, certificate_id) == "ACTIVE"


@pytest.mark.parametrize("transport", ALL_TRANSPORTS)
def test_sdk_provisions_with_create_keys_and_certificate(emulator: Emulator, transport: str) -> None:
    with identity_client(emulator, transport) as identity:
        created = identity.create_keys_and_certificate(iotidentity.CreateKeysAndCertificateRequest()).result(
            timeout=WAIT
        )

        certificate = _parsed_certificate(created.certificate_pem, created.certificate_id)
        private_key = load_pem_private_key(created.private_key.encode(), password=None)
        assert _public_key_der(certificate.public_key()) == _public_key_der(private_key.public_key())
        assert created.certificate_ownership_token
        _register_and_check(emulator, identity, created.certificate_id, created.certificate_ownership_token)


@pytest.mark.parametrize("transport", ALL_TRANSPORTS)
def test_sdk_provisions_with_create_certificate_from_csr(
    emulator: Emulator, transport: str, device_csr: tuple[str, str]
) -> None:
    _, csr_pem = device_csr
    with identity_client(emulator, transport) as identity:
        created = identity.create_certificate_from_csr(
            iotidentity.CreateCertificateFromCsrRequest(certificate_signing_request=csr_pem)
        ).result(timeout=WAIT)

        certificate = _parsed_certificate(created.certificate_pem, created.certificate_id)
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        assert _public_key_der(certificate.public_key()) == _public_key_der(csr.public_key())
        assert created.certificate_ownership_token
        _register_and_check(emulator, identity, created.certificate_id, created.certificate_ownership_token)


@pytest.mark.parametrize("transport", ["mtls", "wss-sigv4", "mqtt5-mtls"])
def test_sdk_surfaces_register_thing_rejection_for_unknown_template(
    emulator: Emulator, transport: str
) -> None:
    with identity_client(emulator, transport) as identity:
        created = identity.create_keys_and_certificate(iotidentity.CreateKeysAndCertificateRequest()).result(
            timeout=WAIT
        )
        future = identity.register_thing(
            iotidentity.RegisterThingRequest(
                template_name="no-such-template",
                certificate_ownership_token=created.certificate_ownership_token,
                parameters={"SerialNumber": _serial()},
            )
        )

        with pytest.raises(V2ServiceException) as raised:
            future.result(timeout=WAIT)

    # The SDK parsed the emulator's .../rejected payload into its modeled error shape.
    error = raised.value.modeled_error
    assert isinstance(error, iotidentity.V2ErrorResponse)
    assert raised.value.inner_error is None
    status_code, error_code = emulator.config.error_codes.template_not_found
    assert (error.status_code, error.error_code) == (status_code, error_code)
    assert isinstance(error.error_message, str) and error.error_message
    assert _certificate_status(emulator, created.certificate_id) == "PENDING_ACTIVATION"
    assert emulator.registry.list_things() == []


def test_sdk_websocket_signed_with_wrong_secret_is_refused_at_upgrade(emulator: Emulator) -> None:
    # The counterpart of the SigV4 cases above: the emulator really checks awscrt's signature.
    connection = _websocket_connection(emulator, session_token=None, secret="not-the-secret")
    with pytest.raises(AwsCrtError) as raised:
        connection.connect().result(timeout=WAIT)
    assert raised.value.name == "AWS_ERROR_HTTP_WEBSOCKET_UPGRADE_FAILURE"
    assert emulator.connected_client_ids() == []


def test_sdk_mqtt5_client_reads_aws_connack_properties(emulator: Emulator) -> None:
    lifecycle = Mqtt5Lifecycle()
    with mqtt5_client(emulator, "mqtt5-mtls", lifecycle):
        connack = lifecycle.connack
        assert connack is not None
        assert connack.reason_code == mqtt5.ConnectReasonCode.SUCCESS
        assert not connack.session_present
        assert (connack.receive_maximum, connack.maximum_qos) == (100, mqtt5.QoS.AT_LEAST_ONCE)
        assert connack.maximum_packet_size == 149504
        assert connack.topic_alias_maximum == 8
        # The SDK's default keep-alive is 1200 s, the top of AWS's 30-1200 s range.
        assert connack.server_keep_alive == 1200


def test_sdk_mqtt5_client_vanishing_without_disconnect_is_cleaned_up(emulator: Emulator) -> None:
    # The SDK closes its socket without a DISCONNECT packet (captured from AWS's sample).
    with mqtt5_client(emulator, "mqtt5-mtls") as client:
        client.subscribe(
            mqtt5.SubscribePacket(
                [mqtt5.Subscription("$aws/certificates/create/json/accepted", mqtt5.QoS.AT_LEAST_ONCE)]
            )
        ).result(timeout=WAIT)
        assert len(emulator.connected_client_ids()) == 1
    deadline = time.monotonic() + WAIT
    while emulator.connected_client_ids() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emulator.connected_client_ids() == []
