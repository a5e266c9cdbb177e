"""What the packet codecs and the property codec share: reading a packet's fields, variable
byte integers, UTF-8 strings, and framing a packet.

`packets`, `packets5` and `properties` import this module and never each other's readers.
"""

from __future__ import annotations

import struct

from emulator.mqtt.errors import ProtocolError


class Reader:
    """Cursor over one packet's variable header and payload."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.pos = 0
        self.name = name

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def u8(self) -> int:
        if self.remaining() < 1:
            raise ProtocolError(f"{self.name}: truncated packet")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        if self.remaining() < 2:
            raise ProtocolError(f"{self.name}: truncated packet")
        (value,) = struct.unpack_from("!H", self.data, self.pos)
        self.pos += 2
        return int(value)

    def binary(self) -> bytes:
        length = self.u16()
        if self.remaining() < length:
            raise ProtocolError(f"{self.name}: string length {length} exceeds packet")
        value = self.data[self.pos : self.pos + length]
        self.pos += length
        return value

    def text(self) -> str:
        raw = self.binary()
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"{self.name}: string is not valid UTF-8") from exc
        # MQTT 3.1.1 section 1.5.3: U+0000 must not appear in a UTF-8 encoded string.
        if "\x00" in value:
            raise ProtocolError(f"{self.name}: string contains U+0000")
        return value

    def varint(self) -> int:
        multiplier, value = 1, 0
        for _ in range(4):
            byte = self.u8()
            value += (byte & 0x7F) * multiplier
            if not byte & 0x80:
                return value
            multiplier *= 128
        raise ProtocolError(f"{self.name}: variable byte integer longer than 4 bytes")

    def rest(self) -> bytes:
        value = self.data[self.pos :]
        self.pos = len(self.data)
        return value


def decode_remaining_length(first_bytes: bytes) -> tuple[int, int] | None:
    """Return (length, bytes used) or None when more bytes are needed."""
    multiplier, value = 1, 0
    for index, byte in enumerate(first_bytes):
        if index >= 4:
            raise ProtocolError("malformed remaining length (more than 4 bytes)")
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return value, index + 1
        multiplier *= 128
    if len(first_bytes) >= 4:
        raise ProtocolError("malformed remaining length (more than 4 bytes)")
    return None


def encode_varint(value: int) -> bytes:
    """A variable byte integer: the fixed header's remaining length and MQTT 5's lengths."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def frame(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_varint(len(body)) + body
