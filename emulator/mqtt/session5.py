"""What an MQTT 5 connection negotiates at CONNECT, and the client's topic aliases.

The CONNACK copies what AWS IoT Core sends (a real CONNACK, captured): Receive Maximum 100,
Maximum QoS 1, Maximum Packet Size 149504, Topic Alias Maximum 8, Server Keep Alive equal to the
client's keep-alive after AWS's 30-1200 s clamp, session present 0 on clean start.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.mqtt import packets5, properties
from emulator.mqtt.errors import ProtocolError
from emulator.mqtt.packets import Connect, Publish
from emulator.mqtt.properties import Properties

RECEIVE_MAXIMUM = 100
MAXIMUM_QOS = 1
TOPIC_ALIAS_MAXIMUM = 8  # AWS IoT Core: topic aliases up to 8 per connection


@dataclass
class Session5:
    receive_maximum: int = 65535  # the client's: our QoS 1 in-flight window
    client_maximum_packet_size: int = 2**28  # the client's: larger messages are dropped
    refusal: tuple[int, str] | None = None  # (CONNACK reason code, why)
    topic_aliases: dict[int, str] = field(default_factory=dict)

    @classmethod
    def negotiate(cls, connect: Connect) -> Session5:
        props = connect.properties
        session = cls(
            receive_maximum=props.integer(properties.RECEIVE_MAXIMUM, 65535),
            client_maximum_packet_size=props.integer(properties.MAXIMUM_PACKET_SIZE, 2**28),
        )
        if properties.AUTHENTICATION_METHOD in props.values:
            # AWS IoT Core supports no enhanced authentication (no AUTH packet).
            session.refusal = (packets5.BAD_AUTHENTICATION_METHOD, "enhanced authentication is not supported")
        elif session.receive_maximum == 0:
            session.refusal = (packets5.PROTOCOL_ERROR, "Receive Maximum of 0")
        elif session.client_maximum_packet_size == 0:
            session.refusal = (packets5.PROTOCOL_ERROR, "Maximum Packet Size of 0")
        return session

    def connack_properties(self, keep_alive: int, assigned_client_id: str | None) -> Properties:
        values: dict[int, properties.Value] = {
            properties.RECEIVE_MAXIMUM: RECEIVE_MAXIMUM,
            properties.MAXIMUM_QOS: MAXIMUM_QOS,
            properties.MAXIMUM_PACKET_SIZE: packets5.MAXIMUM_PACKET_SIZE,
            properties.TOPIC_ALIAS_MAXIMUM: TOPIC_ALIAS_MAXIMUM,
            properties.SERVER_KEEP_ALIVE: keep_alive,
        }
        if assigned_client_id is not None:
            values[properties.ASSIGNED_CLIENT_IDENTIFIER] = assigned_client_id
        return Properties(values)

    def resolve_topic(self, publish: Publish) -> None:
        """Apply a client's Topic Alias (MQTT 5.0 section 3.3.2.3.4) and keep what is forwarded."""
        assert publish.properties is not None
        alias = publish.properties.get(properties.TOPIC_ALIAS)
        if alias is not None:
            assert isinstance(alias, int)
            if not 1 <= alias <= TOPIC_ALIAS_MAXIMUM:
                raise ProtocolError(
                    f"topic alias {alias} outside 1..{TOPIC_ALIAS_MAXIMUM}", packets5.TOPIC_ALIAS_INVALID
                )
            if publish.topic:
                self.topic_aliases[alias] = publish.topic
            elif alias in self.topic_aliases:
                publish.topic = self.topic_aliases[alias]
            else:
                raise ProtocolError(f"topic alias {alias} used before it was set", packets5.PROTOCOL_ERROR)
        elif not publish.topic:
            raise ProtocolError("PUBLISH with an empty topic and no topic alias", packets5.PROTOCOL_ERROR)
        publish.properties = publish.properties.forwarded()
