"""The emulator as an MQTT 3.1.1 server: listeners, pub/sub, limits and hostile input."""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
from emulators import plain_mqtt_only
from mqtt_support import MqttTestClient
from raw_sockets import keep, open_socket
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator, Limits
from emulator.mqtt.codec import encode_varint
from emulator.security.sigv4 import presign_path


def raw_connect(port: int, client_id: str = "raw", keepalive: int = 60) -> socket.socket:
    sock = open_socket(port)
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02" + struct.pack("!H", keepalive) + struct.pack("!H", len(cid)) + cid
    sock.sendall(bytes([0x10, len(body)]) + body)
    assert sock.recv(4) == b"\x20\x02\x00\x00"
    return sock


def is_closed(sock: socket.socket, timeout: float = 5) -> bool:
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("scheme", ["mqtt", "mqtts", "ws", "wss"])
def test_every_listener_carries_pub_sub(emulator: Emulator, scheme: str) -> None:
    tls = (
        dict(
            ca_file=str(emulator.ca_path),
            cert=str(emulator.claim_cert_path),
            key=str(emulator.claim_key_path),
        )
        if scheme == "mqtts"
        else {}
    )
    if scheme == "wss":
        tls = dict(ca_file=str(emulator.ca_path))
    client = MqttTestClient(emulator.urls[scheme], **tls).connect()
    try:
        assert client.subscribe("room/+/temp") == [1]
        client.publish("room/1/temp", b"21.5")
        message = client.expect()
        assert (message.topic, message.payload) == ("room/1/temp", b"21.5")
    finally:
        client.close()


def test_wildcards_match_ordinary_topics_but_not_dollar_topics(emulator: Emulator) -> None:
    listener = MqttTestClient(emulator.urls["mqtt"]).connect()
    sender = MqttTestClient(emulator.urls["mqtt"]).connect()
    try:
        listener.subscribe("#", "a/+/c")
        sender.publish("a/b/c", b"1")
        assert listener.expect().topic == "a/b/c"  # overlapping filters: one copy
        listener.expect_nothing(0.2)
        sender.publish("$aws/things/x/shadow/update", b"{}")
        listener.expect_nothing()
    finally:
        listener.close()
        sender.close()


def test_duplicate_client_id_disconnects_the_older_connection(emulator: Emulator) -> None:
    first = MqttTestClient(emulator.urls["mqtt"], client_id="same-id").connect()
    first.client.reconnect_delay_set(30, 60)  # keep it from fighting back during the test
    second = MqttTestClient(emulator.urls["mqtt"], client_id="same-id").connect()
    try:
        assert first.disconnected.wait(5)
        assert second.client.is_connected()
    finally:
        first.close()
        second.close()


def test_malformed_packet_closes_only_that_client(emulator: Emulator) -> None:
    bystander = MqttTestClient(emulator.urls["mqtt"]).connect()
    try:
        bad = raw_connect(emulator.ports["mqtt"], "bad-one")
        bad.sendall(b"\x82\x03\x00\x01\x00")  # SUBSCRIBE with a truncated topic filter
        assert is_closed(bad)
        truncated = raw_connect(emulator.ports["mqtt"], "truncated")
        truncated.sendall(b"\x30\xff\xff\xff\xff\x01")  # remaining length of 5 bytes
        assert is_closed(truncated)
        bystander.subscribe("still/here")
        bystander.publish("still/here", b"ok")
        assert bystander.expect().payload == b"ok"
    finally:
        bystander.close()


def test_first_packet_must_be_connect(emulator: Emulator) -> None:
    sock = open_socket(emulator.ports["mqtt"])
    sock.sendall(b"\xc0\x00")  # PINGREQ before CONNECT
    assert is_closed(sock)


def test_unsupported_protocol_level_gets_connack_1(emulator: Emulator) -> None:
    sock = open_socket(emulator.ports["mqtt"])
    body = b"\x00\x04MQTT\x06\x02\x00\x3c\x00\x01x"  # level 6: neither 3.1.1 nor 5
    sock.sendall(bytes([0x10, len(body)]) + body)
    assert sock.recv(4) == b"\x20\x02\x00\x01"
    assert is_closed(sock)


def test_client_id_longer_than_128_bytes_is_rejected(emulator: Emulator) -> None:
    sock = open_socket(emulator.ports["mqtt"])
    cid = b"x" * 129
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(cid)) + cid
    sock.sendall(b"\x10" + encode_varint(len(body)) + body)
    assert sock.recv(4) == b"\x20\x02\x00\x02"


def test_oversized_payload_disconnects_the_publisher(client_not_reconnecting: MqttTestClient) -> None:
    client_not_reconnecting.client.publish("big/topic", b"x" * (128 * 1024 + 1), qos=0)
    assert client_not_reconnecting.disconnected.wait(5)


def test_qos2_publish_disconnects_and_qos2_subscribe_is_granted_qos1(
    client_not_reconnecting: MqttTestClient,
) -> None:
    assert client_not_reconnecting.subscribe("q/2", qos=2) == [1]
    client_not_reconnecting.client.publish("q/2", b"x", qos=2)
    assert client_not_reconnecting.disconnected.wait(5)


def test_subscription_limits_answer_failure_codes(emulator: Emulator) -> None:
    client = MqttTestClient(emulator.urls["mqtt"]).connect()
    try:
        assert client.subscribe(*[f"nine/{i}" for i in range(9)]) == [0x80] * 9
        for start in range(0, 48, 8):
            assert client.subscribe(*[f"t/{i}" for i in range(start, start + 8)]) == [1] * 8
        assert client.subscribe("t/48", "t/49", "t/50") == [1, 1, 0x80]
    finally:
        client.close()


def test_topic_with_more_than_seven_slashes_disconnects(client_not_reconnecting: MqttTestClient) -> None:
    client_not_reconnecting.client.publish("a/b/c/d/e/f/g/h/i", b"x", qos=0)
    assert client_not_reconnecting.disconnected.wait(5)


def test_keep_alive_is_enforced_at_one_and_a_half_times(tmp_path) -> None:
    with plain_mqtt_only(tmp_path, Limits(min_keep_alive=1)) as emulator:
        sock = raw_connect(emulator.ports["mqtt"], "silent", keepalive=1)
        started = time.monotonic()
        assert is_closed(sock, timeout=5)
        assert 1.3 < time.monotonic() - started < 3


def test_will_message_is_published_when_a_client_vanishes(emulator: Emulator) -> None:
    watcher = MqttTestClient(emulator.urls["mqtt"]).connect()
    try:
        watcher.subscribe("status/dev1")
        sock = open_socket(emulator.ports["mqtt"])
        body = b"\x00\x04MQTT\x04\x06\x00\x3c\x00\x04dev1" + b"\x00\x0bstatus/dev1" + b"\x00\x04gone"
        sock.sendall(bytes([0x10, len(body)]) + body)
        assert sock.recv(4) == b"\x20\x02\x00\x00"
        sock.close()
        assert watcher.expect().payload == b"gone"
    finally:
        watcher.close()


def upgrade_status(url: str, path: str) -> tuple[int, str]:
    parts = url.split("/mqtt")[0]
    try:
        with ws_connect(parts + path, subprotocols=["mqtt"], open_timeout=5):
            return 101, ""
    except InvalidStatus as exc:
        return exc.response.status_code, exc.response.body.decode()


def test_websocket_upgrade_without_signature_gets_403_with_reason(emulator: Emulator) -> None:
    status, body = upgrade_status(emulator.urls["ws"], "/mqtt")
    assert status == 403
    assert "X-Amz" in body


def test_websocket_upgrade_with_wrong_secret_gets_403(emulator: Emulator) -> None:
    host = f"127.0.0.1:{emulator.ports['ws']}"
    path = presign_path(host, "us-east-1", DEFAULT_ACCESS_KEY_ID, "wrong-secret", now=datetime.now(UTC))
    status, body = upgrade_status(emulator.urls["ws"], path)
    assert (status, "signature does not match" in body) == (403, True)
    good = presign_path(
        host, "us-east-1", DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, now=datetime.now(UTC)
    )
    assert upgrade_status(emulator.urls["ws"], good)[0] == 101


def test_websocket_upgrade_with_an_expired_signature_gets_403(emulator: Emulator) -> None:
    host = f"127.0.0.1:{emulator.ports['ws']}"
    path = presign_path(
        host,
        "us-east-1",
        DEFAULT_ACCESS_KEY_ID,
        DEFAULT_SECRET_ACCESS_KEY,
        now=datetime.now(UTC) - timedelta(minutes=20),
    )
    status, body = upgrade_status(emulator.urls["ws"], path)
    assert status == 403 and "request expired at" in body


def test_websocket_upgrade_on_another_path_gets_404(emulator: Emulator) -> None:
    assert upgrade_status(emulator.urls["ws"], "/other")[0] == 404


def test_tls_listener_refuses_a_client_without_certificate(emulator: Emulator) -> None:
    context = ssl.create_default_context(cafile=str(emulator.ca_path))
    sock = open_socket(emulator.ports["mqtts"])
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        tls = context.wrap_socket(sock, server_hostname="localhost")
        keep(tls)
        body = b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x01x"
        tls.sendall(bytes([0x10, len(body)]) + body)
        if not tls.recv(4):
            raise ConnectionResetError("closed")


def test_disconnect_all_drops_every_client_from_another_thread(
    emulator: Emulator, client_not_reconnecting: MqttTestClient
) -> None:
    emulator.disconnect_all()
    assert client_not_reconnecting.disconnected.wait(5)


def _subscribe_raw(sock: socket.socket, *filters: str) -> None:
    body = b"\x00\x01" + b"".join(struct.pack("!H", len(f)) + f.encode() + b"\x00" for f in filters)
    sock.sendall(b"\x82" + encode_varint(len(body)) + body)
    assert sock.recv(1) == b"\x90"  # SUBACK (the rest is left unread)


@contextmanager
def a_sleeper_cut_off(tmp_path: Path) -> Iterator[tuple[Emulator, socket.socket]]:
    """An emulator queueing at most 256 KiB per client, and the raw socket of a client ("sleeper")
    that subscribed to a firehose and never reads, once the emulator no longer counts it as
    connected; the publisher that flooded it stays connected until the block ends."""
    with plain_mqtt_only(tmp_path, Limits(max_queued_bytes=256 * 1024)) as emulator:
        sock = keep(socket.socket())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up quickly
        sock.settimeout(5)
        sock.connect(("127.0.0.1", emulator.ports["mqtt"]))
        body = b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x07sleeper"
        sock.sendall(bytes([0x10, len(body)]) + body)
        assert sock.recv(4) == b"\x20\x02\x00\x00"
        _subscribe_raw(sock, "firehose")
        publisher = MqttTestClient(emulator.urls["mqtt"]).connect()
        try:
            deadline = time.monotonic() + 20
            while "sleeper" in emulator.connected_client_ids():
                assert time.monotonic() < deadline, "a client that never reads was kept"
                publisher.publish("firehose", b"x" * 100_000, qos=1)
            yield emulator, sock
        finally:
            publisher.close()


def test_client_that_stops_reading_is_aborted_and_freed(tmp_path: Path) -> None:
    with a_sleeper_cut_off(tmp_path) as (emulator, sock):
        # Gone from the server: tasks, subscriptions and socket freed, not merely flagged.
        assert "sleeper" not in emulator.connected_client_ids()
        assert emulator._connections() and all(c.client_id != "sleeper" for c in emulator._connections())
        assert is_closed(sock, timeout=2)


def test_a_client_that_stops_reading_is_reset_leaving_no_unsent_data_in_the_kernel(tmp_path: Path) -> None:
    # Closed gracefully, the server's socket would sit in FIN-WAIT-1 for minutes holding what the
    # client never read (megabytes per connection); a reset (SO_LINGER 0) drops it at once.
    with a_sleeper_cut_off(tmp_path) as (emulator, sock):
        port = emulator.ports["mqtt"]
        client_port = sock.getsockname()[1]

        def server_side() -> list[str]:
            return [
                c.status
                for c in psutil.net_connections(kind="tcp")
                if c.laddr and c.laddr.port == port and c.raddr and c.raddr.port == client_port
            ]

        deadline = time.monotonic() + 5
        while server_side() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server_side() == [], "the emulator's end still holds the connection (FIN-WAIT-1)"
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):  # what was in flight, then the reset
                pass


def test_subscribe_flood_of_refused_filters_logs_one_line(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    sock = raw_connect(emulator.ports["mqtt"], "flooder")
    with caplog.at_level("INFO", logger="emulator.mqtt"):
        _subscribe_raw(sock, *[f"flood/{i}" for i in range(8000)])
        sock.sendall(b"\xc0\x00")  # PINGREQ: its PINGRESP follows the SUBACK's handling
        sock.settimeout(5)
        received = b""
        while not received.endswith(b"\xd0\x00"):
            received += sock.recv(65536)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING and "flooder" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage()[:100] for r in lines]
    assert "8000 of 8000 subscriptions refused" in lines[0].getMessage()
    assert len(lines[0].getMessage()) < 1000
