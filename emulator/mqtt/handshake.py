"""The CONNECT handshake: which protocol, which client, authorised or not, and the CONNACK.

The protocol level picks the codec (4 = MQTT 3.1.1, 5 = MQTT 5); MQTT 5 clients get AWS IoT's
CONNACK properties and reason codes, 3.1.1 clients the 3.1.1 return codes.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, NoReturn

from emulator.errors import ProtocolError
from emulator.mqtt import packets, packets5, topics
from emulator.mqtt.packets import Connect, Publish
from emulator.mqtt.session5 import Session5

if TYPE_CHECKING:
    from emulator.mqtt.connection import Connection

log = logging.getLogger("emulator.mqtt")


async def accept(connection: Connection, connect: Connect) -> bool:
    """CONNECT: refuse (with the 3.1.1 or MQTT 5 code) or accept and send CONNACK."""
    if connect.protocol_name != "MQTT" or connect.protocol_level not in (4, 5):
        # AWS IoT speaks MQTT 3.1.1 and 5; anything else gets the 3.1.1 refusal.
        connection.send(packets.connack(False, packets.UNACCEPTABLE_PROTOCOL))
        raise ProtocolError(
            f"unsupported protocol {connect.protocol_name!r} level "
            f"{connect.protocol_level} (MQTT 3.1.1 and 5 only)"
        )
    connection.protocol_level = connect.protocol_level
    session5 = Session5.negotiate(connect) if connection.mqtt5 else None
    if session5 is not None and session5.refusal is not None:
        _refuse(connection, packets.NOT_AUTHORIZED, *session5.refusal)
    client_id = connect.client_id
    if len(client_id.encode("utf-8")) > connection.limits.max_client_id_bytes:
        _refuse(
            connection,
            packets.IDENTIFIER_REJECTED,
            packets5.CLIENT_IDENTIFIER_NOT_VALID,
            f"client id longer than {connection.limits.max_client_id_bytes} bytes",
        )
    assigned = None
    if not client_id:
        if not connect.clean_session:
            _refuse(
                connection,
                packets.IDENTIFIER_REJECTED,
                packets5.CLIENT_IDENTIFIER_NOT_VALID,
                "empty client id without clean session",
            )
        client_id = assigned = "auto-" + secrets.token_hex(8)
    if connect.will_qos == 2:
        _refuse(
            connection,
            packets.NOT_AUTHORIZED,
            packets5.QOS_NOT_SUPPORTED,
            "will QoS 2 is not supported (AWS IoT supports QoS 0 and 1)",
        )
    connection.client_id = client_id
    refusal = connection.broker.authorize(connection)
    if refusal:
        # AWS closes a 3.1.1 connection of a refused certificate without a CONNACK; an
        # MQTT 5 client is told 0x87 Not authorized.
        if connection.mqtt5:
            connection.send(packets5.connack(False, packets5.NOT_AUTHORIZED))
        raise ProtocolError(f"not authorized: {refusal}")
    # AWS clamps keep-alive into 30-1200 s; 0 (off in MQTT) is taken as the maximum here, so
    # a silent client is still dropped (AWS's handling of 0 is unconfirmed).
    keep_alive = connect.keep_alive or connection.limits.max_keep_alive
    keep_alive = min(max(keep_alive, connection.limits.min_keep_alive), connection.limits.max_keep_alive)
    connection.keep_alive_timeout = keep_alive * 1.5
    if connect.will_topic is not None:
        try:
            topics.check_topic_name(
                connect.will_topic,
                max_bytes=connection.limits.max_topic_bytes,
                max_slashes=connection.limits.max_topic_slashes,
            )
        except ProtocolError as exc:
            if connection.mqtt5:
                connection.send(packets5.connack(False, packets5.TOPIC_NAME_INVALID))
            raise exc
        connection.will = Publish(
            connect.will_topic,
            connect.will_payload or b"",
            qos=connect.will_qos,
            properties=connect.will_properties.forwarded(),
        )
    await connection.broker.register(connection)
    # Sessions are always clean here: a persistent-session request is served as a new
    # session and says so with session present = 0.
    if session5 is not None:
        connection.session5 = session5
        connection.outbox.receive_maximum = session5.receive_maximum
        connection.send(
            packets5.connack(False, packets5.SUCCESS, session5.connack_properties(keep_alive, assigned))
        )
    else:
        connection.send(packets.connack(False, packets.ACCEPTED))
    connection.connacked = True
    log.info(
        "%s connected (MQTT %s, keep-alive %ss)",
        connection.name,
        "5" if connection.mqtt5 else "3.1.1",
        keep_alive,
    )
    return True


def _refuse(connection: Connection, code311: int, code5: int, reason: str) -> NoReturn:
    if connection.mqtt5:
        connection.send(packets5.connack(False, code5))
    else:
        connection.send(packets.connack(False, code311))
    raise ProtocolError(reason)
