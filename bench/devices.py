"""What a device (or the bench standing in for many) brings: CSRs, an MQTT client, the two flows.

`MqttDevice` is a paho client driven from the calling thread (no loop thread): every wait pumps
`client.loop()` itself until its answer comes or its deadline passes, so a flow costs no thread
hand-offs and one thread can own one connection.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY
from emulator.security.sigv4 import presign_path

REGION = "us-east-1"
TEMPLATE = "demo"  # the emulator's demo template: parameter SerialNumber, thing demo-<it>
CREATE_TOPIC = "$aws/certificates/create/json"
CSR_TOPIC = "$aws/certificates/create-from-csr/json"
REGISTER_TOPIC = f"$aws/provisioning-templates/{TEMPLATE}/provision/json"
FLOWS = ("csr", "keys")


class FlowError(Exception):
    """One provisioning attempt failed; `kind` groups errors in the report."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass(frozen=True)
class Csr:
    pem: str
    public_key_der: bytes  # SubjectPublicKeyInfo, to check the certificate answered is for it


def make_csrs(count: int) -> list[Csr]:
    # Made before timing, so the client's signing cost is not in the figures. AWS (and the
    # emulator) issue a new certificate with a new serial per request, so a pool can be reused.
    csrs = []
    for _ in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        csrs.append(Csr(csr.public_bytes(serialization.Encoding.PEM).decode("ascii"), spki(key.public_key())))
    return csrs


def spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@dataclass(frozen=True)
class Evidence:
    """What one successful provisioning returned, checked after the cell (outside the timing)."""

    serial: str
    thing_name: str
    certificate_pem: str
    csr: Csr | None
    private_key_pem: str | None


def answered(serial: str, payload: bytes, csr: Csr | None) -> Evidence:
    """The evidence in the body of a 201 from the service."""
    answer = json.loads(payload)
    return Evidence(
        serial, str(answer.get("thingName")), answer["certificatePem"], csr, answer.get("privateKey")
    )


def mix_up(evidence: Evidence) -> str | None:
    """Why this answer is not the one asked for (another caller's), or None when it is ours."""
    if evidence.thing_name != f"{TEMPLATE}-{evidence.serial}":
        return f"thing {evidence.thing_name!r} answered for serial {evidence.serial!r}"
    try:
        certificate = x509.load_pem_x509_certificate(evidence.certificate_pem.encode())
        if evidence.csr is not None:
            expected = evidence.csr.public_key_der
        elif evidence.private_key_pem is not None:
            # The answer's own key pair: no need to re-validate RSA (that costs ~50 ms).
            key = serialization.load_pem_private_key(
                evidence.private_key_pem.encode(), None, unsafe_skip_rsa_key_validation=True
            )
            expected = spki(key.public_key())
        else:
            return "no CSR and no private key to check the certificate against"
    except ValueError as exc:
        return f"unparseable certificate or key: {exc}"
    if spki(certificate.public_key()) != expected:
        return "the certificate is not for this caller's key"
    return None


@dataclass(frozen=True)
class Endpoint:
    """An emulator listener: mqtt://host:port (plain TCP) or ws://host:port/mqtt (SigV4)."""

    url: str

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 0

    @property
    def websockets(self) -> bool:
        return urlsplit(self.url).scheme in ("ws", "wss")

    def presigned_path(self) -> str:
        # paho sends Host: host:port for a non-default port; that exact string is signed.
        return presign_path(
            f"{self.host}:{self.port}",
            REGION,
            DEFAULT_ACCESS_KEY_ID,
            DEFAULT_SECRET_ACCESS_KEY,
            now=datetime.now(UTC),
        )


def unique_client_id(prefix: str) -> str:
    # AWS allows 1 CONNECT per second per client id: every connection gets its own.
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class MqttDevice:
    """One MQTT 3.1.1 connection, driven synchronously by the thread that owns it."""

    def __init__(self, endpoint: Endpoint, client_id: str, qos: int = 1) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self.qos = qos  # 1 as AWS's samples do; 0 for the floor, as the service does
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            transport="websockets" if endpoint.websockets else "tcp",
            protocol=mqtt.MQTTv311,
            clean_session=True,
            reconnect_on_failure=False,
        )
        if endpoint.websockets:
            self.client.ws_set_options(path=endpoint.presigned_path())
        # paho never sets TCP_NODELAY: Nagle + delayed ACK would add ~40 ms per round trip
        # (measured against the emulator over loopback). Browsers set it too, so
        # connect-per-request is not slowed.
        self.client.on_socket_open = _set_nodelay
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._connack: Any = None
        self._subacks: dict[int, list[Any]] = {}
        self._expect = ""
        self._reply: tuple[str, bytes | bytearray] | None = None

    # Callbacks run inside client.loop(), on the owning thread: they only record.
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._connack = reason

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[Any], properties: Any
    ) -> None:
        self._subacks[mid] = codes

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # The answers carry no correlation token: only one request is ever in flight here.
        if self._expect and message.topic.startswith(self._expect) and self._reply is None:
            self._reply = (message.topic, message.payload)

    def connect(self, deadline: float) -> None:
        try:
            # Blocking: TCP connect, WebSocket upgrade (one round trip), then CONNECT is sent.
            self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=60)
        except (OSError, ValueError) as exc:
            raise FlowError("connect", str(exc)) from None
        self._pump(lambda: self._connack is not None, deadline, "CONNACK")
        if self._connack.is_failure:
            raise FlowError("connect", f"CONNACK {self._connack}")

    def subscribe(self, filters: list[str], deadline: float) -> None:
        rc, mid = self.client.subscribe([(f, self.qos) for f in filters])
        if rc != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise FlowError("lost", f"subscribe: {mqtt.error_string(rc)}")
        self._pump(lambda: mid in self._subacks, deadline, "SUBACK")
        if any(code.is_failure for code in self._subacks.pop(mid)):
            raise FlowError("subscribe", f"refused: {filters}")

    def ask(self, topic: str, body: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Publish one request (at self.qos) and wait for its accepted/rejected answer."""
        self._expect, self._reply = topic + "/", None
        info = self.client.publish(topic, json.dumps(body), qos=self.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise FlowError("lost", f"publish: {mqtt.error_string(info.rc)}")
        self._pump(lambda: self._reply is not None, deadline, f"answer on {topic}")
        assert self._reply is not None
        answer_topic, payload = self._reply
        self._expect = ""
        if answer_topic.endswith("/rejected"):
            raise FlowError("rejected", payload[:200].decode("utf-8", "replace"))
        answer: dict[str, Any] = json.loads(payload)
        return answer

    def disconnect(self) -> None:
        # With no loop thread, DISCONNECT is written at once and paho closes the socket.
        self.client.disconnect()

    def _pump(self, done: Any, deadline: float, what: str) -> None:
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FlowError("timeout", f"no {what}")
            rc = self.client.loop(min(remaining, 1.0))
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise FlowError("lost", f"waiting for {what}: {mqtt.error_string(rc)}")


def create_request(flow: str, csr: Csr) -> tuple[str, dict[str, Any]]:
    if flow == "csr":
        return CSR_TOPIC, {"certificateSigningRequest": csr.pem}
    return CREATE_TOPIC, {}


def answer_filters(topic: str) -> list[str]:
    return [topic + "/accepted", topic + "/rejected"]


def provision_over(device: MqttDevice, flow: str, serial: str, csr: Csr, step_timeout: float) -> Evidence:
    """CreateCertificateFromCsr or CreateKeysAndCertificate, then RegisterThing, back to back."""
    topic, body = create_request(flow, csr)
    created = device.ask(topic, body, time.monotonic() + step_timeout)
    registered = device.ask(
        REGISTER_TOPIC,
        {
            "certificateOwnershipToken": created["certificateOwnershipToken"],
            "parameters": {"SerialNumber": serial},
        },
        time.monotonic() + step_timeout,
    )
    return Evidence(
        serial,
        str(registered.get("thingName")),
        created["certificatePem"],
        csr if flow == "csr" else None,
        created.get("privateKey"),
    )


def _set_nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    getattr(sock, "_socket", sock).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
