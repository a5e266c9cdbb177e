"""The CONNECT handshake: which protocol, which client, authorised or not, and the CONNACK.

The protocol level picks the codec (4 = MQTT 3.1.1, 5 = MQTT 5); MQTT 5 clients get AWS IoT's
CONNACK properties and reason codes, 3.1.1 clients the 3.1.1 return codes. `negotiate` returns
what was agreed (a `Session`), which the connection applies, or raises `Refused` with the CONNACK
to send first, if any.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from emulator.mqtt import packets, packets5, topics
from emulator.mqtt.errors import ProtocolError
from emulator.mqtt.limits import Limits
from emulator.mqtt.packets import Connect, Publish
from emulator.mqtt.session5 import Session5

# Asked once the client id is known: a refusal reason, or None to let the client in.
Authorize = Callable[[str, int], str | None]  # (client id, protocol level)


class Refused(ProtocolError):
    """CONNECT refused; `connack` is the packet that tells the client, None to close without one."""

    def __init__(self, reason: str, connack: bytes | None) -> None:
        super().__init__(reason)
        self.connack = connack


@dataclass(frozen=True)
class Session:
    """What a CONNECT negotiated."""

    protocol_level: int
    client_id: str
    assigned_client_id: str | None  # the id the server chose for an empty one
    keep_alive: int  # after AWS's clamp
    will: Publish | None
    session5: Session5 | None  # MQTT 5 only

    @property
    def mqtt5(self) -> bool:
        return self.protocol_level == 5

    @property
    def keep_alive_timeout(self) -> float:
        return self.keep_alive * 1.5

    def connack(self) -> bytes:
        # Sessions are always clean here: a persistent-session request is served as a new
        # session and says so with session present = 0.
        if self.session5 is not None:
            properties = self.session5.connack_properties(self.keep_alive, self.assigned_client_id)
            return packets5.connack(False, packets5.SUCCESS, properties)
        return packets.connack(False, packets.ACCEPTED)


def negotiate(connect: Connect, limits: Limits, authorize: Authorize) -> Session:
    """CONNECT: the session agreed, or `Refused` (with the 3.1.1 or MQTT 5 code to send)."""
    if connect.protocol_name != "MQTT" or connect.protocol_level not in (4, 5):
        # AWS IoT speaks MQTT 3.1.1 and 5; anything else gets the 3.1.1 refusal.
        raise Refused(
            f"unsupported protocol {connect.protocol_name!r} level "
            f"{connect.protocol_level} (MQTT 3.1.1 and 5 only)",
            packets.connack(False, packets.UNACCEPTABLE_PROTOCOL),
        )
    mqtt5 = connect.protocol_level == 5
    session5 = Session5.negotiate(connect) if mqtt5 else None
    if session5 is not None and session5.refusal is not None:
        _refuse(mqtt5, packets.NOT_AUTHORIZED, *session5.refusal)
    client_id = connect.client_id
    if len(client_id.encode("utf-8")) > limits.max_client_id_bytes:
        _refuse(
            mqtt5,
            packets.IDENTIFIER_REJECTED,
            packets5.CLIENT_IDENTIFIER_NOT_VALID,
            f"client id longer than {limits.max_client_id_bytes} bytes",
        )
    assigned = None
    if not client_id:
        if not connect.clean_session:
            _refuse(
                mqtt5,
                packets.IDENTIFIER_REJECTED,
                packets5.CLIENT_IDENTIFIER_NOT_VALID,
                "empty client id without clean session",
            )
        client_id = assigned = "auto-" + secrets.token_hex(8)
    if connect.will_qos == 2:
        _refuse(
            mqtt5,
            packets.NOT_AUTHORIZED,
            packets5.QOS_NOT_SUPPORTED,
            "will QoS 2 is not supported (AWS IoT supports QoS 0 and 1)",
        )
    refusal = authorize(client_id, connect.protocol_level)
    if refusal:
        # AWS closes a 3.1.1 connection of a refused certificate without a CONNACK; an
        # MQTT 5 client is told 0x87 Not authorized.
        raise Refused(
            f"not authorized: {refusal}", packets5.connack(False, packets5.NOT_AUTHORIZED) if mqtt5 else None
        )
    # AWS clamps keep-alive into 30-1200 s; 0 (off in MQTT) is taken as the maximum here, so
    # a silent client is still dropped (AWS's handling of 0 is unconfirmed).
    keep_alive = connect.keep_alive or limits.max_keep_alive
    keep_alive = min(max(keep_alive, limits.min_keep_alive), limits.max_keep_alive)
    will = None
    if connect.will_topic is not None:
        try:
            topics.check_topic_name(
                connect.will_topic, max_bytes=limits.max_topic_bytes, max_slashes=limits.max_topic_slashes
            )
        except ProtocolError as exc:
            raise Refused(
                str(exc), packets5.connack(False, packets5.TOPIC_NAME_INVALID) if mqtt5 else None
            ) from exc
        will = Publish(
            connect.will_topic,
            connect.will_payload or b"",
            qos=connect.will_qos,
            properties=connect.will_properties.forwarded(),
        )
    return Session(connect.protocol_level, client_id, assigned, keep_alive, will, session5)


def _refuse(mqtt5: bool, code311: int, code5: int, reason: str) -> NoReturn:
    raise Refused(reason, packets5.connack(False, code5) if mqtt5 else packets.connack(False, code311))
