"""MQTT 3.1.1 packet codec: bytes in, typed packets out, and the few packets a server sends.

The packet classes are shared with the MQTT 5 codec (`packets5`), which fills their properties
and reason codes; a 3.1.1 packet leaves those at their defaults.

Decoding is strict: anything the specification calls malformed raises ProtocolError, and the
connection that sent it is closed (MQTT 3.1.1 section 4.8: "the Server MUST close the Network
Connection"). Remaining-length is checked against a maximum before any payload is read, so an
oversized packet never reaches memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from emulator.mqtt import properties
from emulator.mqtt.codec import Reader, encode_text, frame
from emulator.mqtt.errors import ProtocolError
from emulator.mqtt.properties import Properties

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
AUTH = 15  # MQTT 5 only

PACKET_NAMES = {
    1: "CONNECT",
    2: "CONNACK",
    3: "PUBLISH",
    4: "PUBACK",
    5: "PUBREC",
    6: "PUBREL",
    7: "PUBCOMP",
    8: "SUBSCRIBE",
    9: "SUBACK",
    10: "UNSUBSCRIBE",
    11: "UNSUBACK",
    12: "PINGREQ",
    13: "PINGRESP",
    14: "DISCONNECT",
    15: "AUTH",
}

# CONNACK return codes (MQTT 3.1.1 table 3.1)
ACCEPTED = 0
UNACCEPTABLE_PROTOCOL = 1
IDENTIFIER_REJECTED = 2
SERVER_UNAVAILABLE = 3
BAD_CREDENTIALS = 4
NOT_AUTHORIZED = 5

SUBACK_FAILURE = 0x80


@dataclass
class Connect:
    client_id: str
    clean_session: bool
    keep_alive: int
    protocol_name: str
    protocol_level: int
    username: str | None = None
    password: bytes | None = None
    will_topic: str | None = None
    will_payload: bytes | None = None
    will_qos: int = 0
    will_retain: bool = False
    properties: Properties = field(default_factory=Properties)
    will_properties: Properties = field(default_factory=Properties)


@dataclass
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    packet_id: int | None = None
    dup: bool = False
    retain: bool = False
    properties: Properties | None = None


@dataclass
class Subscribe:
    packet_id: int
    filters: list[tuple[str, int]] = field(default_factory=list)  # (filter, requested QoS)
    no_local: set[str] = field(default_factory=set)  # MQTT 5 No Local option
    properties: Properties = field(default_factory=Properties)


@dataclass
class Unsubscribe:
    packet_id: int
    filters: list[str] = field(default_factory=list)
    properties: Properties = field(default_factory=Properties)


@dataclass
class PacketId:
    """PUBACK (and the QoS 2 packets we refuse) carry only a packet identifier."""

    kind: int
    packet_id: int
    reason_code: int = 0  # MQTT 5


@dataclass
class Bare:
    """PINGREQ and DISCONNECT carry nothing (an MQTT 5 DISCONNECT: a reason code)."""

    kind: int
    reason_code: int = 0


Packet = Connect | Publish | Subscribe | Unsubscribe | PacketId | Bare


def decode(first_byte: int, body: bytes) -> Packet:
    kind, flags, reader = open_packet(first_byte, body)
    if kind == PUBLISH:
        return read_publish(flags, reader)
    if kind == CONNECT:
        packet: Packet = _decode_connect(reader)
    elif kind == SUBSCRIBE:
        packet = _decode_subscribe(reader)
    elif kind == UNSUBSCRIBE:
        packet = read_unsubscribe(reader)
    elif kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        packet = PacketId(kind, reader.u16())
    elif kind in (PINGREQ, DISCONNECT):
        packet = Bare(kind)
    else:
        raise ProtocolError(f"{reader.name} is not sent by clients")
    return finished(packet, reader)


# -- what both codecs read alike (MQTT 5 adds properties where these take a reader of them) ----


def open_packet(first_byte: int, body: bytes) -> tuple[int, int, Reader]:
    """The packet's type, its fixed-header flags and a reader of its body named after the type."""
    kind, flags = first_byte >> 4, first_byte & 0x0F
    reader = Reader(body, PACKET_NAMES.get(kind, f"packet type {kind}"))
    # MQTT 3.1.1 section 2.2.2 (the same in 5.0): fixed reserved flags but for PUBLISH's;
    # SUBSCRIBE, UNSUBSCRIBE, PUBREL use 0b0010.
    expected_flags = 0b0010 if kind in (SUBSCRIBE, UNSUBSCRIBE, PUBREL) else 0
    if kind != PUBLISH and flags != expected_flags:
        raise ProtocolError(f"{reader.name}: invalid fixed-header flags {flags:#06b}")
    return kind, flags, reader


def finished(packet: Packet, reader: Reader) -> Packet:
    """The packet, once nothing of its body is left unread."""
    if reader.remaining():
        raise ProtocolError(f"{reader.name}: {reader.remaining()} unexpected trailing bytes")
    return packet


def read_publish(
    flags: int, reader: Reader, read_properties: Callable[[Reader], Properties] | None = None
) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("PUBLISH: QoS 3 is malformed")
    topic = reader.text()  # MQTT 5: may be empty when a Topic Alias stands for it
    packet_id = reader.u16() if qos else None
    if packet_id == 0:
        raise ProtocolError("PUBLISH: packet identifier 0")
    publish_properties = read_properties(reader) if read_properties is not None else None
    return Publish(
        topic=topic,
        payload=reader.rest(),
        qos=qos,
        packet_id=packet_id,
        dup=bool(flags & 0x08),
        retain=bool(flags & 0x01),
        properties=publish_properties,
    )


def read_unsubscribe(
    reader: Reader,
    read_properties: Callable[[Reader], Properties] = lambda _: Properties(),
    reason_code: int | None = None,
) -> Unsubscribe:
    """`reason_code`: the MQTT 5 reason code when it lists no topic filter."""
    packet = Unsubscribe(packet_id=reader.u16(), properties=read_properties(reader))
    while reader.remaining():
        packet.filters.append(reader.text())
    if not packet.filters:
        raise ProtocolError("UNSUBSCRIBE: no topic filters", reason_code=reason_code)
    return packet


def _decode_connect(reader: Reader) -> Connect:
    protocol_name = reader.text()
    level = reader.u8()
    if protocol_name != "MQTT" or level not in (4, 5):
        # Another protocol version lays out the rest differently: stop here so the server can
        # answer CONNACK 0x01 (unacceptable protocol version).
        reader.rest()
        return Connect(
            client_id="", clean_session=True, keep_alive=0, protocol_name=protocol_name, protocol_level=level
        )
    flags = reader.u8()
    if flags & 0x01:
        raise ProtocolError("CONNECT: reserved flag set")
    keep_alive = reader.u16()
    # MQTT 5 adds a property block after keep-alive and one before the will topic; the rest of
    # the layout is 3.1.1's.
    connect_properties = properties.decode(reader, properties.CONNECT_ALLOWED) if level == 5 else Properties()
    client_id = reader.text()
    will_topic = will_payload = None
    will_properties = Properties()
    will_qos = (flags >> 3) & 0x03
    if flags & 0x04:
        if level == 5:
            will_properties = properties.decode(reader, properties.WILL_ALLOWED)
        will_topic = reader.text()
        will_payload = reader.binary()
    elif will_qos or flags & 0x20:
        raise ProtocolError("CONNECT: will QoS/retain set without will flag")
    if will_qos == 3:
        raise ProtocolError("CONNECT: will QoS 3")
    username = reader.text() if flags & 0x80 else None
    password = reader.binary() if flags & 0x40 else None
    if password is not None and username is None and level == 4:
        raise ProtocolError("CONNECT: password without user name")
    return Connect(
        client_id=client_id,
        clean_session=bool(flags & 0x02),
        keep_alive=keep_alive,
        protocol_name=protocol_name,
        protocol_level=level,
        username=username,
        password=password,
        will_topic=will_topic,
        will_payload=will_payload,
        will_qos=will_qos,
        will_retain=bool(flags & 0x20),
        properties=connect_properties,
        will_properties=will_properties,
    )


def _decode_subscribe(reader: Reader) -> Subscribe:
    packet = Subscribe(packet_id=reader.u16())
    while reader.remaining():
        topic_filter = reader.text()
        requested = reader.u8()
        if requested & 0xFC:
            raise ProtocolError("SUBSCRIBE: reserved bits set in requested QoS")
        packet.filters.append((topic_filter, requested & 0x03))
    if not packet.filters:
        raise ProtocolError("SUBSCRIBE: no topic filters")
    return packet


def connack(session_present: bool, return_code: int) -> bytes:
    return frame(CONNACK << 4, bytes([1 if session_present else 0, return_code]))


def publish(
    topic: str, payload: bytes, qos: int = 0, packet_id: int | None = None, retain: bool = False
) -> bytes:
    body = encode_text(topic) + (struct.pack("!H", packet_id) if qos and packet_id else b"") + payload
    return frame((PUBLISH << 4) | (qos << 1) | int(retain), body)


def puback(packet_id: int) -> bytes:
    return frame(PUBACK << 4, struct.pack("!H", packet_id))


def suback(packet_id: int, return_codes: list[int]) -> bytes:
    return frame(SUBACK << 4, struct.pack("!H", packet_id) + bytes(return_codes))


def unsuback(packet_id: int) -> bytes:
    return frame(UNSUBACK << 4, struct.pack("!H", packet_id))


def pingresp() -> bytes:
    return frame(PINGRESP << 4, b"")
