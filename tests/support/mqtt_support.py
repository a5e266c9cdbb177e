"""A plain paho-mqtt test client: connect over any emulator listener, subscribe and wait for the
SUBACK, publish, and wait for messages. Every wait has a timeout."""

from __future__ import annotations

import json
import queue
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY
from emulator.security.sigv4 import presign_path

WAIT = 10.0
# Fleet provisioning's request topics (JSON), as AWS IoT names them.
KEYS_TOPIC = "$aws/certificates/create/json"
CSR_TOPIC = "$aws/certificates/create-from-csr/json"
DEMO_TOPIC = "$aws/provisioning-templates/demo/provision/json"


@dataclass
class Message:
    topic: str
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload)


class MqttTestClient:
    def __init__(
        self,
        url: str,
        *,
        ca_file: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        client_id: str | None = None,
        presign: bool = True,
        secret: str = DEFAULT_SECRET_ACCESS_KEY,
        keepalive: int = 60,
    ) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 0
        self.scheme = parts.scheme
        transport = "websockets" if self.scheme in ("ws", "wss") else "tcp"
        self.client_id = client_id or f"test-{uuid.uuid4().hex[:12]}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, transport=transport, protocol=mqtt.MQTTv311
        )
        self.keepalive = keepalive
        self.messages: queue.Queue[Message] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connect_rc: Any = None
        self._subacks: dict[int, Any] = {}
        self._suback_event = threading.Condition()
        if self.scheme in ("mqtts", "wss"):
            self.client.tls_set(ca_certs=ca_file, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)
        if transport == "websockets":
            path = "/mqtt"
            if presign:
                host_header = f"{self.host}:{self.port}"
                path = presign_path(
                    host_header, "us-east-1", DEFAULT_ACCESS_KEY_ID, secret, now=datetime.now(UTC)
                )
            self.client.ws_set_options(path=path)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_socket_open = lambda c, u, s: getattr(s, "_socket", s).setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )

    # paho callbacks (loop thread): only record and signal
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connect_rc = rc
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.messages.put(Message(message.topic, message.payload))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._suback_event:
            self._subacks[mid] = codes
            self._suback_event.notify_all()

    def connect(self) -> MqttTestClient:
        self.client.connect(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        deadline = time.monotonic() + WAIT
        while not self.connected.wait(0.02):
            if self.disconnected.is_set() or time.monotonic() > deadline:
                self.client.loop_stop()
                if self.disconnected.is_set():
                    raise ConnectionError("closed by the server before CONNACK")
                raise TimeoutError("no CONNACK")
        if self.connect_rc.is_failure:
            raise ConnectionError(f"CONNACK refused: {self.connect_rc}")
        return self

    def subscribe(self, *filters: str, qos: int = 1) -> list[int]:
        with self._suback_event:
            rc, mid = self.client.subscribe([(f, qos) for f in filters])
            assert rc == mqtt.MQTT_ERR_SUCCESS, rc
            if not self._suback_event.wait_for(lambda: mid in self._subacks, WAIT):
                raise TimeoutError("no SUBACK")
            return [code.value for code in self._subacks.pop(mid)]

    def publish(self, topic: str, payload: bytes | str | dict[str, Any], qos: int = 1) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=qos)
        if qos:
            info.wait_for_publish(WAIT)

    def expect(self, timeout: float = WAIT) -> Message:
        return self.messages.get(timeout=timeout)

    def expect_nothing(self, within: float = 0.5) -> None:
        try:
            message = self.messages.get(timeout=within)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {message.topic}")

    def request(self, topic: str, payload: dict[str, Any] | bytes, timeout: float = WAIT) -> tuple[str, Any]:
        """Subscribe to accepted/rejected, publish, and return ("accepted"|"rejected", body)."""
        self.subscribe(topic + "/accepted", topic + "/rejected")
        self.publish(topic, payload if isinstance(payload, bytes) else json.dumps(payload))
        message = self.expect(timeout)
        outcome = message.topic.rsplit("/", 1)[1]
        return outcome, message.json()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.client._reset_sockets()  # paho leaves its socket pair to the garbage collector
