"""MQTT 5 properties (MQTT 5.0 section 2.2.2): decode, check against the packet, encode.

A property block is a variable-byte-integer length followed by (identifier, value) pairs. Each
packet type allows its own identifiers; a property twice (other than User Property and
Subscription Identifier) is a protocol error, an unknown one malformed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from emulator.mqtt.codec import Reader, encode_text, encode_varint
from emulator.mqtt.errors import ProtocolError

PAYLOAD_FORMAT_INDICATOR = 0x01
MESSAGE_EXPIRY_INTERVAL = 0x02
CONTENT_TYPE = 0x03
RESPONSE_TOPIC = 0x08
CORRELATION_DATA = 0x09
SUBSCRIPTION_IDENTIFIER = 0x0B
SESSION_EXPIRY_INTERVAL = 0x11
ASSIGNED_CLIENT_IDENTIFIER = 0x12
SERVER_KEEP_ALIVE = 0x13
AUTHENTICATION_METHOD = 0x15
AUTHENTICATION_DATA = 0x16
REQUEST_PROBLEM_INFORMATION = 0x17
WILL_DELAY_INTERVAL = 0x18
REQUEST_RESPONSE_INFORMATION = 0x19
RESPONSE_INFORMATION = 0x1A
SERVER_REFERENCE = 0x1C
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23
MAXIMUM_QOS = 0x24
RETAIN_AVAILABLE = 0x25
USER_PROPERTY = 0x26
MAXIMUM_PACKET_SIZE = 0x27
WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
SHARED_SUBSCRIPTION_AVAILABLE = 0x2A

# Identifier -> wire type: byte, u16, u32, varint, text, binary (User Property is a text pair).
_TYPES = {
    PAYLOAD_FORMAT_INDICATOR: "byte",
    MESSAGE_EXPIRY_INTERVAL: "u32",
    CONTENT_TYPE: "text",
    RESPONSE_TOPIC: "text",
    CORRELATION_DATA: "binary",
    SUBSCRIPTION_IDENTIFIER: "varint",
    SESSION_EXPIRY_INTERVAL: "u32",
    ASSIGNED_CLIENT_IDENTIFIER: "text",
    SERVER_KEEP_ALIVE: "u16",
    AUTHENTICATION_METHOD: "text",
    AUTHENTICATION_DATA: "binary",
    REQUEST_PROBLEM_INFORMATION: "byte",
    WILL_DELAY_INTERVAL: "u32",
    REQUEST_RESPONSE_INFORMATION: "byte",
    RESPONSE_INFORMATION: "text",
    SERVER_REFERENCE: "text",
    REASON_STRING: "text",
    RECEIVE_MAXIMUM: "u16",
    TOPIC_ALIAS_MAXIMUM: "u16",
    TOPIC_ALIAS: "u16",
    MAXIMUM_QOS: "byte",
    RETAIN_AVAILABLE: "byte",
    MAXIMUM_PACKET_SIZE: "u32",
    WILDCARD_SUBSCRIPTION_AVAILABLE: "byte",
    SUBSCRIPTION_IDENTIFIER_AVAILABLE: "byte",
    SHARED_SUBSCRIPTION_AVAILABLE: "byte",
}

# What a client may send in each packet (MQTT 5.0 table 2-4); User Property is allowed in all.
CONNECT_ALLOWED = frozenset(
    {
        SESSION_EXPIRY_INTERVAL,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
        REQUEST_PROBLEM_INFORMATION,
        REQUEST_RESPONSE_INFORMATION,
        RECEIVE_MAXIMUM,
        TOPIC_ALIAS_MAXIMUM,
        MAXIMUM_PACKET_SIZE,
    }
)
WILL_ALLOWED = frozenset(
    {
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        WILL_DELAY_INTERVAL,
    }
)
PUBLISH_ALLOWED = frozenset(
    {
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        TOPIC_ALIAS,
        SUBSCRIPTION_IDENTIFIER,
    }
)
SUBSCRIBE_ALLOWED = frozenset({SUBSCRIPTION_IDENTIFIER})
# One-byte properties whose only values are 0 and 1.
_ZERO_OR_ONE = frozenset(
    {PAYLOAD_FORMAT_INDICATOR, REQUEST_PROBLEM_INFORMATION, REQUEST_RESPONSE_INFORMATION}
)
ACK_ALLOWED = frozenset({REASON_STRING})  # PUBACK, UNSUBSCRIBE: none
DISCONNECT_ALLOWED = frozenset({SESSION_EXPIRY_INTERVAL, REASON_STRING, SERVER_REFERENCE})
NONE_ALLOWED: frozenset[int] = frozenset()

# Forwarded from a publisher to subscribers unchanged (MQTT 5.0 section 3.3.2.3): everything but
# the Topic Alias (per connection) and Subscription Identifier (per subscription).
FORWARDED = frozenset(
    {PAYLOAD_FORMAT_INDICATOR, MESSAGE_EXPIRY_INTERVAL, CONTENT_TYPE, RESPONSE_TOPIC, CORRELATION_DATA}
)

Value = int | str | bytes


@dataclass
class Properties:
    values: dict[int, Value] = field(default_factory=dict)
    user: list[tuple[str, str]] = field(default_factory=list)
    subscription_identifiers: list[int] = field(default_factory=list)

    def get(self, identifier: int, default: Value | None = None) -> Value | None:
        return self.values.get(identifier, default)

    def integer(self, identifier: int, default: int) -> int:
        value = self.values.get(identifier, default)
        assert isinstance(value, int)
        return value

    def forwarded(self) -> Properties:
        return Properties({k: v for k, v in self.values.items() if k in FORWARDED}, list(self.user))

    def __bool__(self) -> bool:
        return bool(self.values or self.user or self.subscription_identifiers)


def decode(reader: Reader, allowed: frozenset[int]) -> Properties:
    length = reader.varint()
    if length > reader.remaining():
        raise ProtocolError(f"{reader.name}: property length {length} exceeds packet")
    end = reader.pos + length
    properties = Properties()
    while reader.pos < end:
        identifier = reader.varint()
        kind = _TYPES.get(identifier)
        if kind is None and identifier != USER_PROPERTY:
            raise ProtocolError(f"{reader.name}: unknown property {identifier:#04x}")
        if identifier != USER_PROPERTY and identifier not in allowed:
            raise ProtocolError(
                f"{reader.name}: property {identifier:#04x} not allowed here", reason_code=0x82
            )
        if identifier == USER_PROPERTY:
            properties.user.append((reader.text(), reader.text()))
            continue
        value = _read_value(reader, kind or "")
        if identifier in _ZERO_OR_ONE and value not in (0, 1):
            # MQTT 5.0 sections 3.3.2.3.2, 3.1.2.11.6 and 3.1.2.11.7: any other value is a
            # protocol error.
            raise ProtocolError(f"{reader.name}: property {identifier:#04x} must be 0 or 1", reason_code=0x82)
        if identifier == SUBSCRIPTION_IDENTIFIER:
            properties.subscription_identifiers.append(int(value))
            continue
        if identifier in properties.values:
            raise ProtocolError(f"{reader.name}: property {identifier:#04x} appears twice", reason_code=0x82)
        properties.values[identifier] = value
    if reader.pos != end:
        raise ProtocolError(f"{reader.name}: property block overruns its length")
    return properties


def _read_value(reader: Reader, kind: str) -> Value:
    if kind == "byte":
        return reader.u8()
    if kind == "u16":
        return reader.u16()
    if kind == "u32":
        return (reader.u16() << 16) | reader.u16()
    if kind == "varint":
        return reader.varint()
    if kind == "text":
        return reader.text()
    return reader.binary()


def encode(properties: Properties | None) -> bytes:
    body = bytearray()
    if properties is not None:
        for identifier, value in properties.values.items():
            body += encode_varint(identifier)
            kind = _TYPES[identifier]
            if kind == "byte":
                body.append(int(value))
            elif kind == "u16":
                body += struct.pack("!H", value)
            elif kind == "u32":
                body += struct.pack("!I", value)
            elif kind == "varint":
                body += encode_varint(int(value))
            elif kind == "text":
                body += encode_text(str(value))
            else:
                assert isinstance(value, bytes)
                body += struct.pack("!H", len(value)) + value
        for key, text in properties.user:
            body += encode_varint(USER_PROPERTY) + encode_text(key) + encode_text(text)
    return encode_varint(len(body)) + bytes(body)
