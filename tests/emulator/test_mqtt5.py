"""The emulator as an MQTT 5 server: paho-mqtt's MQTT 5 client and raw MQTT 5 packets.

AWS IoT Core serves MQTT 5 beside 3.1.1 on every endpoint; these check what an MQTT 5 client
sees: AWS's CONNACK properties, reason codes in SUBACK, UNSUBACK and DISCONNECT, forwarded
PUBLISH properties, topic aliases, and fleet-provisioning answers without properties.
"""

from __future__ import annotations

import json
import queue
import socket
import ssl
import struct
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from emulators import plain_mqtt_only
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from raw_sockets import open_socket

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator, Limits
from emulator.mqtt.codec import encode_varint
from emulator.security.sigv4 import presign_path

WAIT = 10.0


class Paho5:
    """paho-mqtt as an MQTT 5 client; callbacks only record and signal, every wait times out."""

    def __init__(self, emulator: Emulator, scheme: str = "mqtt", client_id: str | None = None) -> None:
        transport = "websockets" if scheme in ("ws", "wss") else "tcp"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"p5-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv5,
            transport=transport,
        )
        self.host, self.port = "127.0.0.1", emulator.ports[scheme]
        if scheme == "mqtts":
            self.client.tls_set(
                ca_certs=str(emulator.ca_path),
                certfile=str(emulator.claim_cert_path),
                keyfile=str(emulator.claim_key_path),
                cert_reqs=ssl.CERT_REQUIRED,
            )
        elif scheme == "wss":
            self.client.tls_set(ca_certs=str(emulator.ca_path), cert_reqs=ssl.CERT_REQUIRED)
        if transport == "websockets":
            self.client.ws_set_options(
                path=presign_path(
                    f"{self.host}:{self.port}",
                    "us-east-1",
                    DEFAULT_ACCESS_KEY_ID,
                    DEFAULT_SECRET_ACCESS_KEY,
                    now=datetime.now(UTC),
                )
            )
        self.client.reconnect_delay_set(30, 60)  # no reconnects fighting the test
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack: tuple[Any, Any] | None = None
        self.disconnect_reason: Any = None
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._subacks: dict[int, list[int]] = {}
        self._suback_seen = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, message: self.messages.put(message)
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connack = (rc, props)
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.disconnect_reason = rc
        self.disconnected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._suback_seen:
            self._subacks[mid] = [code.value for code in codes]
            self._suback_seen.notify_all()

    def connect(self) -> Paho5:
        self.client.connect(self.host, self.port, keepalive=60)
        self.client.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK"
        return self

    def subscribe(
        self, *filters: str | tuple[str, SubscribeOptions], properties: Properties | None = None
    ) -> list[int]:
        wanted = [f if isinstance(f, tuple) else (f, SubscribeOptions(qos=1)) for f in filters]
        with self._suback_seen:
            rc, mid = self.client.subscribe(wanted, properties=properties)
            assert rc == mqtt.MQTT_ERR_SUCCESS
            assert self._suback_seen.wait_for(lambda: mid in self._subacks, WAIT), "no SUBACK"
            return self._subacks.pop(mid)

    def expect(self, timeout: float = WAIT) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.client._reset_sockets()  # paho leaves its socket pair to the garbage collector


@pytest.fixture
def paho5(emulator: Emulator):
    clients: list[Paho5] = []

    def make(scheme: str = "mqtt", client_id: str | None = None) -> Paho5:
        client = Paho5(emulator, scheme, client_id).connect()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# -- raw MQTT 5 over a socket, for what a well-behaved client library will not send ----------


def _text(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + encode_varint(len(body)) + body


def read_packet(sock: socket.socket, timeout: float = WAIT) -> tuple[int, bytes]:
    """(packet type, body); raises TimeoutError if nothing whole arrives in time."""
    first, body = read_raw(sock, timeout)
    return first >> 4, body


def read_raw(sock: socket.socket, timeout: float = WAIT) -> tuple[int, bytes]:
    """(first byte, body) of the next packet."""
    sock.settimeout(timeout)

    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise ConnectionResetError("closed")
            data += chunk
        return data

    first = exactly(1)[0]
    length, multiplier = 0, 1
    while True:
        byte = exactly(1)[0]
        length += (byte & 0x7F) * multiplier
        multiplier *= 128
        if not byte & 0x80:
            break
    return first, exactly(length)


def connect5(
    emulator: Emulator, client_id: str = "", *, properties: bytes = b"\x00", keepalive: int = 60
) -> tuple[socket.socket, bytes]:
    """Send an MQTT 5 CONNECT (clean start); return the socket and the CONNACK body."""
    sock = open_socket(emulator.ports["mqtt"], timeout=WAIT)
    body = _text("MQTT") + b"\x05\x02" + struct.pack("!H", keepalive) + properties + _text(client_id)
    sock.sendall(_packet(0x10, body))
    kind, connack = read_packet(sock)
    assert kind == 2
    return sock, connack


def subscribe5(sock: socket.socket, packet_id: int, *filters: tuple[str, int]) -> list[int]:
    body = (
        struct.pack("!H", packet_id)
        + b"\x00"
        + b"".join(_text(f) + bytes([options]) for f, options in filters)
    )
    sock.sendall(_packet(0x82, body))
    kind, suback = read_packet(sock)
    assert kind == 9 and suback[:2] == struct.pack("!H", packet_id)
    return list(suback[3:])  # after packet id and an empty property block


def publish5(
    sock: socket.socket,
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int = 1,
    properties: bytes = b"\x00",
) -> None:
    pid = struct.pack("!H", packet_id) if qos else b""
    sock.sendall(_packet(0x30 | (qos << 1), _text(topic) + pid + properties + payload))


def expect_disconnect(sock: socket.socket) -> int:
    """Read until a DISCONNECT; return its reason code, and check the socket then closes."""
    while True:
        kind, body = read_packet(sock)
        if kind == 14:
            break
    sock.settimeout(WAIT)
    assert sock.recv(1) == b""
    return body[0]


# -- CONNECT / CONNACK -----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["mqtt", "mqtts", "ws", "wss"])
def test_paho_mqtt5_pub_sub_on_every_listener(emulator: Emulator, paho5, scheme: str) -> None:
    subscriber, publisher = paho5(scheme), paho5(scheme)
    assert subscriber.subscribe("room/+/temp") == [1]
    publisher.client.publish("room/1/temp", b"21.5", qos=1).wait_for_publish(WAIT)
    message = subscriber.expect()
    assert (message.topic, message.payload, message.qos) == ("room/1/temp", b"21.5", 1)


def test_connack_carries_aws_properties(paho5) -> None:
    client = paho5()
    assert client.connack is not None
    reason, props = client.connack
    assert reason.value == 0
    assert props.ReceiveMaximum == 100
    assert props.MaximumQoS == 1
    assert props.MaximumPacketSize == 149504
    assert props.TopicAliasMaximum == 8
    assert props.ServerKeepAlive == 60  # the client's own, inside AWS's 30-1200 s


def test_connack_raw_bytes_and_keep_alive_clamp(emulator: Emulator) -> None:
    _, connack = connect5(emulator, "raw-clamp", keepalive=5)
    assert connack[:2] == b"\x00\x00"  # session present 0, success
    # Receive Maximum 100, Maximum QoS 1, Maximum Packet Size 149504, Topic Alias Maximum 8,
    # Server Keep Alive 30 (AWS raises keep-alives below 30 s to 30).
    expected = (
        b"\x21\x00\x64"
        + b"\x24\x01"
        + b"\x27"
        + struct.pack("!I", 149504)
        + b"\x22\x00\x08"
        + b"\x13\x00\x1e"
    )
    assert connack[2:] == bytes([len(expected)]) + expected


def test_empty_client_id_is_assigned_one(emulator: Emulator) -> None:
    _, connack = connect5(emulator, "")
    assert connack[1] == 0 and b"\x12\x00\x15auto-" in connack


def test_refused_connects_get_mqtt5_reason_codes(emulator: Emulator) -> None:
    _, connack = connect5(emulator, "x" * 129)
    assert connack == b"\x00\x85\x00"  # client identifier not valid
    # Enhanced authentication (an Authentication Method): AWS IoT Core has none.
    _, connack = connect5(emulator, "auth", properties=b"\x08\x15" + _text("SCRAM"))
    assert connack == b"\x00\x8c\x00"
    _, connack = connect5(emulator, "recv0", properties=b"\x03\x21\x00\x00")
    assert connack == b"\x00\x82\x00"  # Receive Maximum 0 is a protocol error


def test_session_taken_over_is_told_0x8e(emulator: Emulator) -> None:
    first, _ = connect5(emulator, "same-5")
    connect5(emulator, "same-5")
    assert expect_disconnect(first) == 0x8E


def test_keep_alive_timeout_is_told_0x8d(tmp_path) -> None:
    with plain_mqtt_only(tmp_path, Limits(min_keep_alive=1)) as emulator:
        sock, _ = connect5(emulator, "silent-5", keepalive=1)
        assert expect_disconnect(sock) == 0x8D


# -- PUBLISH ---------------------------------------------------------------------------------


def test_publish_properties_reach_an_mqtt5_subscriber(paho5) -> None:
    subscriber, publisher = paho5(), paho5()
    subscriber.subscribe("rpc/request")
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("trace", "t-1"), ("trace", "t-2"), ("origin", "test")]
    props.CorrelationData = b"\x00\x01corr"
    props.ResponseTopic = "rpc/response/1"
    props.ContentType = "application/json"
    props.PayloadFormatIndicator = 1
    props.MessageExpiryInterval = 3600
    publisher.client.publish("rpc/request", b"{}", qos=1, properties=props).wait_for_publish(WAIT)

    got = subscriber.expect().properties
    assert got.UserProperty == [("trace", "t-1"), ("trace", "t-2"), ("origin", "test")]
    assert got.CorrelationData == b"\x00\x01corr"
    assert got.ResponseTopic == "rpc/response/1"
    assert got.ContentType == "application/json"
    assert got.PayloadFormatIndicator == 1
    assert got.MessageExpiryInterval == 3600


def test_topic_alias_stands_for_its_topic(paho5) -> None:
    subscriber, publisher = paho5(), paho5()
    subscriber.subscribe("sensors/long/topic/name")
    first = Properties(PacketTypes.PUBLISH)
    first.TopicAlias = 3
    publisher.client.publish("sensors/long/topic/name", b"1", qos=1, properties=first).wait_for_publish(WAIT)
    publisher.client.publish("", b"2", qos=1, properties=first).wait_for_publish(WAIT)
    got = [subscriber.expect(), subscriber.expect()]
    assert [(m.topic, m.payload) for m in got] == [
        ("sensors/long/topic/name", b"1"),
        ("sensors/long/topic/name", b"2"),
    ]
    assert all(getattr(m.properties, "TopicAlias", None) is None for m in got)


@pytest.mark.parametrize(
    ("topic", "properties", "reason"),
    [
        ("a/b", b"\x03\x23\x00\x09", 0x94),  # topic alias 9, above the 8 the CONNACK allowed
        ("a/b", b"\x02\x01\x02", 0x82),  # payload format indicator 2: only 0 or 1 exist
        ("", b"\x03\x23\x00\x02", 0x82),  # an empty topic with an alias never set
    ],
    ids=["topic-alias-above-8-is-0x94", "payload-format-indicator-2-is-a-protocol-error",
         "unknown-topic-alias-is-a-protocol-error"],
)  # fmt: skip
def test_a_publish_with_bad_properties_is_disconnected_with_its_reason_code(
    emulator: Emulator, topic: str, properties: bytes, reason: int
) -> None:
    sock, _ = connect5(emulator, "bad-properties")
    publish5(sock, topic, b"x", properties=properties)
    assert expect_disconnect(sock) == reason


def test_qos2_publish_is_disconnected_0x9b(emulator: Emulator) -> None:
    sock, _ = connect5(emulator, "qos2-5")
    assert subscribe5(sock, 1, ("q/2", 2)) == [1]  # QoS 2 asked, QoS 1 granted (as AWS)
    publish5(sock, "q/2", b"x", qos=2)
    assert expect_disconnect(sock) == 0x9B


def test_aws_limits_are_told_with_reason_codes(emulator: Emulator) -> None:
    sock, _ = connect5(emulator, "slashes-5")
    publish5(sock, "a/b/c/d/e/f/g/h/i", b"x")
    assert expect_disconnect(sock) == 0x90  # topic name invalid: 8 slashes
    sock, _ = connect5(emulator, "big-5")
    publish5(sock, "big", b"x" * (128 * 1024 + 1))
    assert expect_disconnect(sock) == 0x95  # packet too large: 128 KB payload limit


def test_puback_is_sent_for_qos1_and_unknown_pubacks_are_ignored(emulator: Emulator) -> None:
    sock, _ = connect5(emulator, "acks-5")
    sock.sendall(_packet(0x40, b"\x12\x34\x00"))  # PUBACK for an id never sent
    publish5(sock, "nobody/listens", b"x", qos=1, packet_id=7)
    assert read_packet(sock) == (4, b"\x00\x07")  # PUBACK 0x00, reason code left out


# -- SUBSCRIBE / UNSUBSCRIBE -----------------------------------------------------------------


def test_suback_reason_codes_for_refused_filters(paho5) -> None:
    client = paho5()
    assert client.subscribe("ok/1", "a/b/c/d/e/f/g/h/i") == [1, 0x8F]  # 8 slashes
    assert client.subscribe("$share/group/jobs") == [0x9E]
    assert client.subscribe(*[f"nine/{i}" for i in range(9)]) == [0x97] * 9
    with_id = Properties(PacketTypes.SUBSCRIBE)
    with_id.SubscriptionIdentifier = 5
    assert client.subscribe("ok/2", properties=with_id) == [0xA1]
    assert client.subscribe(("qos0", SubscribeOptions(qos=0))) == [0]


def test_more_than_50_subscriptions_gets_quota_exceeded(paho5) -> None:
    client = paho5()
    for start in range(0, 48, 8):
        assert client.subscribe(*[f"t/{i}" for i in range(start, start + 8)]) == [1] * 8
    assert client.subscribe("t/48", "t/49", "t/50") == [1, 1, 0x97]


def test_unsuback_says_which_subscriptions_existed(emulator: Emulator) -> None:
    sock, _ = connect5(emulator, "unsub-5")
    subscribe5(sock, 1, ("here", 1))
    sock.sendall(_packet(0xA2, b"\x00\x02\x00" + _text("here") + _text("never")))
    assert read_packet(sock) == (11, b"\x00\x02\x00\x00\x11")


def test_no_local_keeps_a_clients_own_publishes_from_it(paho5) -> None:
    client = paho5()
    client.subscribe(("echo", SubscribeOptions(qos=1, noLocal=True)))
    client.client.publish("echo", b"mine", qos=1).wait_for_publish(WAIT)
    with pytest.raises(queue.Empty):
        client.expect(0.3)


# -- delivery: QoS, Receive Maximum, fleet provisioning, will ----------------------------------


def test_receive_maximum_bounds_qos1_deliveries_in_flight(emulator: Emulator, paho5) -> None:
    sock, _ = connect5(emulator, "slow-acker", properties=b"\x03\x21\x00\x01")
    subscribe5(sock, 1, ("work", 1))
    publisher = paho5()
    for n in range(3):
        publisher.client.publish("work", str(n).encode(), qos=1).wait_for_publish(WAIT)
    ids = []
    for n in range(3):
        kind, body = read_packet(sock)
        assert kind == 3
        packet_id = body[6:8]  # after the topic "work"
        assert body[8:] == b"\x00" + str(n).encode()  # an empty property block, payload
        ids.append(packet_id)
        with pytest.raises(TimeoutError):  # one in flight: the next waits for our PUBACK
            read_packet(sock, timeout=0.3)
        sock.sendall(_packet(0x40, packet_id))
    assert len(set(ids)) == 3


def test_provisioning_answer_reaches_an_mqtt5_client_at_qos1_without_properties(emulator: Emulator) -> None:
    sock, _ = connect5(emulator, "fp-5")
    topic = "$aws/certificates/create/json"
    assert subscribe5(sock, 1, (topic + "/accepted", 1), (topic + "/rejected", 1)) == [1, 1]
    publish5(sock, topic, b"{}", qos=1, packet_id=9)
    seen = {}
    while len(seen) < 2:
        first, body = read_raw(sock)
        seen[first] = body
    assert sorted(seen) == [0x32, 0x40]  # PUBLISH at QoS 1 (no DUP, no retain), PUBACK
    answer = seen[0x32]
    name_length = struct.unpack("!H", answer[:2])[0]
    assert answer[2 : 2 + name_length] == (topic + "/accepted").encode()
    rest = answer[2 + name_length :]
    packet_id, property_length = rest[:2], rest[2]
    assert packet_id != b"\x00\x00" and property_length == 0  # QoS 1, no MQTT 5 properties
    assert "certificateOwnershipToken" in json.loads(rest[3:])
    sock.sendall(_packet(0x40, packet_id))


def test_provisioning_answer_follows_the_granted_qos0(emulator: Emulator) -> None:
    sock, _ = connect5(emulator, "fp-5-qos0")
    topic = "$aws/certificates/create/json"
    subscribe5(sock, 1, (topic + "/accepted", 0), (topic + "/rejected", 0))
    publish5(sock, topic, b"{}")
    sock.settimeout(WAIT)
    first = sock.recv(1)
    assert first == b"\x30"  # PUBLISH, QoS 0


def test_will_with_properties_is_published_when_an_mqtt5_client_vanishes(emulator: Emulator, paho5) -> None:
    watcher = paho5()
    watcher.subscribe("status/dev5")
    sock = open_socket(emulator.ports["mqtt"], timeout=WAIT)
    will_properties = b"\x0c\x26" + _text("why") + _text("gone")
    body = (
        _text("MQTT")
        + b"\x05\x06\x00\x3c\x00"
        + _text("dev5")
        + will_properties
        + _text("status/dev5")
        + _text("offline")
    )
    sock.sendall(_packet(0x10, body))
    assert read_packet(sock)[0] == 2
    sock.close()
    message = watcher.expect()
    assert message.payload == b"offline"
    assert message.properties.UserProperty == [("why", "gone")]
    deadline = time.monotonic() + WAIT
    while "dev5" in emulator.connected_client_ids() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "dev5" not in emulator.connected_client_ids()
