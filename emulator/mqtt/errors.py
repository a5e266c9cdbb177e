"""The broker's one error: a client broke MQTT or a limit, and its connection is closed.

The MQTT package raises nothing else on purpose, and imports nothing from the emulator around it.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A client broke MQTT or a broker limit in a way answered by disconnecting.

    `reason_code` is the MQTT 5 reason code an MQTT 5 client is told (CONNACK, SUBACK or
    DISCONNECT); None lets the connection pick (0x81 malformed while decoding, else 0x82).
    """

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code
