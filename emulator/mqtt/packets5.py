"""MQTT 5 packet codec: the packets after CONNECT (which `packets` decodes for both versions).

MQTT 5 keeps 3.1.1's fixed header and adds property blocks and reason codes; the decoded packets
are the same classes as 3.1.1's, with their MQTT 5 fields filled.
"""

from __future__ import annotations

import struct

from emulator.mqtt import packets, properties
from emulator.mqtt.codec import Reader, encode_text, frame
from emulator.mqtt.errors import ProtocolError
from emulator.mqtt.packets import (
    AUTH,
    CONNACK,
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    Bare,
    Packet,
    PacketId,
    Subscribe,
)
from emulator.mqtt.properties import Properties

# AWS IoT Core's CONNACK says Maximum Packet Size 149504: the most it accepts from a client.
MAXIMUM_PACKET_SIZE = 149504

# Reason codes (MQTT 5.0 section 2.4) the emulator sends.
SUCCESS = 0x00
DISCONNECT_WITH_WILL = 0x04
NO_SUBSCRIPTION_EXISTED = 0x11
UNSPECIFIED_ERROR = 0x80
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_IDENTIFIER_NOT_VALID = 0x85
NOT_AUTHORIZED = 0x87
SERVER_SHUTTING_DOWN = 0x8B
BAD_AUTHENTICATION_METHOD = 0x8C
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
QUOTA_EXCEEDED = 0x97
QOS_NOT_SUPPORTED = 0x9B
SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1


def decode(first_byte: int, body: bytes) -> Packet:
    kind, flags, reader = packets.open_packet(first_byte, body)
    if kind == PUBLISH:
        return packets.read_publish(flags, reader, _publish_properties)
    if kind == CONNECT:
        raise ProtocolError("second CONNECT on one connection", reason_code=PROTOCOL_ERROR)
    if kind == AUTH:
        # AWS IoT Core supports no enhanced authentication (no AUTH packet).
        raise ProtocolError("AUTH is not supported", reason_code=PROTOCOL_ERROR)
    packet: Packet
    if kind == SUBSCRIBE:
        packet = _decode_subscribe(reader)
    elif kind == UNSUBSCRIBE:
        packet = packets.read_unsubscribe(
            reader, lambda r: properties.decode(r, properties.NONE_ALLOWED), PROTOCOL_ERROR
        )
    elif kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        # The reason code and properties may be left out (MQTT 5.0 section 3.4.2.1).
        packet = PacketId(kind, reader.u16())
        if reader.remaining():
            packet.reason_code = reader.u8()
        if reader.remaining():
            properties.decode(reader, properties.ACK_ALLOWED)
    elif kind == PINGREQ:
        packet = Bare(kind)
    elif kind == DISCONNECT:
        packet = Bare(kind)
        if reader.remaining():
            packet.reason_code = reader.u8()
        if reader.remaining():
            properties.decode(reader, properties.DISCONNECT_ALLOWED)
    else:
        raise ProtocolError(f"{reader.name} is not sent by clients", reason_code=PROTOCOL_ERROR)
    return packets.finished(packet, reader)


def _publish_properties(reader: Reader) -> Properties:
    found = properties.decode(reader, properties.PUBLISH_ALLOWED)
    if found.subscription_identifiers:
        raise ProtocolError(
            "PUBLISH from a client carries a subscription identifier", reason_code=PROTOCOL_ERROR
        )
    return found


def _decode_subscribe(reader: Reader) -> Subscribe:
    packet = Subscribe(
        packet_id=reader.u16(), properties=properties.decode(reader, properties.SUBSCRIBE_ALLOWED)
    )
    while reader.remaining():
        topic_filter = reader.text()
        options = reader.u8()
        # Bits 6-7 reserved, retain handling 3 and QoS 3 are malformed (MQTT 5.0 3.8.3.1).
        if options & 0xC0 or (options >> 4) & 0x03 == 3 or options & 0x03 == 3:
            raise ProtocolError(f"SUBSCRIBE: invalid subscription options {options:#04x}")
        packet.filters.append((topic_filter, options & 0x03))
        if options & 0x04:
            packet.no_local.add(topic_filter)
    if not packet.filters:
        raise ProtocolError("SUBSCRIBE: no topic filters", reason_code=PROTOCOL_ERROR)
    return packet


# -- what the server sends ---------------------------------------------------------------------


def connack(session_present: bool, reason_code: int, connack_properties: Properties | None = None) -> bytes:
    body = bytes([1 if session_present else 0, reason_code])
    return frame(CONNACK << 4, body + properties.encode(connack_properties))


def publish(
    topic: str, payload: bytes, qos: int, packet_id: int | None, publish_properties: Properties | None
) -> bytes:
    body = (
        encode_text(topic)
        + (struct.pack("!H", packet_id) if qos and packet_id else b"")
        + properties.encode(publish_properties)
        + payload
    )
    return frame((PUBLISH << 4) | (qos << 1), body)


def puback(packet_id: int, reason_code: int = SUCCESS) -> bytes:
    # Reason code 0x00 without properties may be left out (MQTT 5.0 section 3.4.2.1).
    tail = b"" if reason_code == SUCCESS else bytes([reason_code])
    return frame(PUBACK << 4, struct.pack("!H", packet_id) + tail)


def suback(packet_id: int, reason_codes: list[int]) -> bytes:
    return frame(SUBACK << 4, struct.pack("!H", packet_id) + properties.encode(None) + bytes(reason_codes))


def unsuback(packet_id: int, reason_codes: list[int]) -> bytes:
    return frame(UNSUBACK << 4, struct.pack("!H", packet_id) + properties.encode(None) + bytes(reason_codes))


def disconnect(reason_code: int, reason: str | None = None) -> bytes:
    extra = Properties({properties.REASON_STRING: reason[:200]}) if reason else None
    return frame(DISCONNECT << 4, bytes([reason_code]) + properties.encode(extra))
