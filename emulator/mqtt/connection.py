"""One client connection: reads packets, answers them, one `on_<packet>` method per type.

The protocol level in CONNECT (4 = MQTT 3.1.1, 5 = MQTT 5) picks the codec for the rest of the
connection. Every protocol violation raises ProtocolError; `serve()` logs it with the reason and
closes this connection only (an MQTT 5 client is first told the reason code in a DISCONNECT).
Outgoing packets go through the connection's `Outbox`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from emulator.mqtt import codec, handshake, packets, packets5, topics
from emulator.mqtt.errors import ProtocolError
from emulator.mqtt.limits import Limits
from emulator.mqtt.outbox import Outbox
from emulator.mqtt.packets import Bare, Connect, PacketId, Publish, Subscribe, Unsubscribe
from emulator.mqtt.properties import Properties
from emulator.mqtt.session5 import Session5
from emulator.mqtt.subscriptions import Subscriptions
from emulator.mqtt.transport import Transport

log = logging.getLogger("emulator.mqtt")
_connection_numbers = itertools.count(1)
REFUSALS_LOGGED = 3  # refused filters named in the one log line per SUBSCRIBE


class Router(Protocol):
    """What a connection needs of the broker that routes for it (`emulator.mqtt.broker.Broker`)."""

    def authorize(self, connection: Connection) -> str | None:
        """A refusal reason for this connection's CONNECT, or None."""
        ...

    async def register(self, connection: Connection) -> None:
        """The connection is CONNECTed under its client id."""
        ...

    def unregister(self, connection: Connection) -> None: ...

    async def route(self, sender: Connection, publish: Publish) -> None: ...


class Connection:
    def __init__(
        self, router: Router, transport: Transport, *, limits: Limits, send_delay: float = 0.0
    ) -> None:
        self.router = router
        self.transport = transport
        self.limits = limits
        self.send_delay = send_delay
        self.number = next(_connection_numbers)
        self.client_id: str | None = None
        self.protocol_level = 4
        self.subscriptions = Subscriptions(limits)
        self.will: Publish | None = None
        self.closed = asyncio.Event()
        self.session5: Session5 | None = None  # MQTT 5 negotiated state
        self.outbox = Outbox(
            transport, send_delay=send_delay, max_queued_bytes=limits.max_queued_bytes, on_overflow=self.abort
        )
        self._buffer = bytearray()
        self.keep_alive_timeout: float | None = None
        self._writer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._clean_exit = False
        self.connacked = False
        self._aborted = False

    def __repr__(self) -> str:
        return f"<{self.transport.kind} {self.client_id or '?'} from {self.transport.peer}>"

    @property
    def certificate_id(self) -> str | None:
        """AWS certificate id (SHA-256 of the DER) of the TLS client certificate, if any."""
        der = self.transport.client_certificate_der
        return hashlib.sha256(der).hexdigest() if der else None

    @property
    def name(self) -> str:
        return f"client {self.client_id!r} ({self.transport.kind} {self.transport.peer})"

    @property
    def mqtt5(self) -> bool:
        return self.protocol_level == 5

    # -- lifecycle ---------------------------------------------------------------------------

    async def serve(self) -> None:
        self._writer = asyncio.create_task(self.outbox.run())
        try:
            connect = await self._read_first_packet()
            if await self.on_connect(connect):
                while True:
                    packet = await self._read_packet(self.keep_alive_timeout)
                    if packet is None:
                        break
                    if isinstance(packet, Bare) and packet.kind == packets.DISCONNECT:
                        # MQTT 5 reason 0x04: "disconnect with will message" asks for the will.
                        self._clean_exit = packet.reason_code != packets5.DISCONNECT_WITH_WILL
                        break
                    await self._dispatch(packet)
        except ProtocolError as exc:
            log.warning("%s disconnected: %s", self.name, exc)
            self._say_goodbye(exc.reason_code or packets5.PROTOCOL_ERROR, str(exc))
        except TimeoutError:
            log.info(
                "%s disconnected: keep-alive expired (no packet within %.0f s)",
                self.name,
                self.keep_alive_timeout or self.limits.connect_timeout,
            )
            self._say_goodbye(packets5.KEEP_ALIVE_TIMEOUT, "keep-alive timeout")
        except (ConnectionError, OSError) as exc:
            log.info("%s connection lost: %s", self.name, exc.__class__.__name__)
        finally:
            await self._shutdown()

    def _say_goodbye(self, reason_code: int, reason: str) -> None:
        # MQTT 5.0 section 4.13: the server SHOULD send DISCONNECT with a reason code before
        # closing for an error (AWS IoT Core does). A 3.1.1 client only sees the socket close.
        if self.mqtt5 and self.connacked and not self._aborted:
            self.send(packets5.disconnect(reason_code, reason))

    async def _shutdown(self) -> None:
        self.router.unregister(self)
        if not self._clean_exit and self.will is not None:
            # The will is published when the connection ends without a normal DISCONNECT
            # (MQTT 3.1.1 section 3.1.2.5, MQTT 5.0 section 3.1.2.5).
            await self.router.route(self, self.will)
        self.subscriptions.clear()
        self.outbox.finish()
        await self._stop_writer()
        for task in list(self._tasks):
            task.cancel()
        await self.transport.close()
        self.closed.set()
        if self.client_id is not None:
            log.info("%s closed", self.name)

    async def _stop_writer(self) -> None:
        if self._writer is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), 2 + self.send_delay)
        except (TimeoutError, ConnectionError, OSError):
            self._writer.cancel()

    async def close(self, reason: str, reason_code: int | None = None) -> None:
        """Close from the server side (duplicate client id, injected fault, shutdown).

        With a reason code, an MQTT 5 client is sent DISCONNECT first; without one the socket
        just closes, as a dropped network connection would.
        """
        log.info("%s closed by server: %s", self.name, reason)
        self._clean_exit = True  # no will for server-side closes we chose
        if reason_code is not None and self.mqtt5 and self.connacked and not self._aborted:
            self.send(packets5.disconnect(reason_code, reason))
            self.outbox.finish()
            await self._stop_writer()
        await self.transport.close()

    def abort(self, reason: str) -> None:
        """Drop the connection at once, unsent data discarded (a client that stopped reading).

        A graceful close would wait to flush what the client is not reading; the socket would
        stay open until the keep-alive ran out. Reading then sees end of stream, and `serve()`
        frees everything as for any other ended connection.
        """
        if self._aborted:
            return
        self._aborted = True
        log.warning("%s aborted: %s", self.name, reason)
        self.outbox.discard()
        self.transport.abort()

    @property
    def requests_in_flight(self) -> int:
        return len(self._tasks)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run work for this connection; it is cancelled when the connection ends."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: handler failed", self.name, exc_info=task.exception())

    # -- reading -----------------------------------------------------------------------------

    async def _read_first_packet(self) -> Connect:
        packet = await self._read_packet(self.limits.connect_timeout)
        if packet is None:
            raise ConnectionResetError("closed before CONNECT")
        if not isinstance(packet, Connect):
            raise ProtocolError("first packet is not CONNECT")
        return packet

    def _max_packet_bytes(self) -> int:
        if self.session5 is not None:
            return packets5.MAXIMUM_PACKET_SIZE
        return self.limits.max_payload_bytes + self.limits.max_topic_bytes + 16

    async def _read_packet(self, timeout: float | None) -> packets.Packet | None:
        async with asyncio.timeout(timeout):
            while True:
                if len(self._buffer) >= 2:
                    header = codec.decode_remaining_length(bytes(self._buffer[1:5]))
                    if header is not None:
                        length, used = header
                        end = 1 + used + length
                        if end > self._max_packet_bytes():
                            raise ProtocolError(
                                f"packet of {end} bytes exceeds the limit of "
                                f"{self._max_packet_bytes()} bytes",
                                packets5.PACKET_TOO_LARGE,
                            )
                        if len(self._buffer) >= end:
                            first, body = self._buffer[0], bytes(self._buffer[1 + used : end])
                            del self._buffer[:end]
                            return self._decode(first, body)
                chunk = await self.transport.read()
                if not chunk:
                    if self._buffer:
                        raise ProtocolError("connection closed in the middle of a packet")
                    return None
                self._buffer += chunk

    def _decode(self, first: int, body: bytes) -> packets.Packet:
        try:
            if self.session5 is not None:
                return packets5.decode(first, body)
            return packets.decode(first, body)
        except ProtocolError as exc:
            if exc.reason_code is None:
                exc.reason_code = packets5.MALFORMED_PACKET
            raise

    async def _dispatch(self, packet: packets.Packet) -> None:
        if isinstance(packet, Publish):
            await self.on_publish(packet)
        elif isinstance(packet, Subscribe):
            self.on_subscribe(packet)
        elif isinstance(packet, Unsubscribe):
            self.on_unsubscribe(packet)
        elif isinstance(packet, PacketId):
            self.on_packet_id(packet)
        elif isinstance(packet, Bare) and packet.kind == packets.PINGREQ:
            self.send(packets.pingresp())
        elif isinstance(packet, Connect):
            raise ProtocolError("second CONNECT on one connection", packets5.PROTOCOL_ERROR)

    # -- packets -----------------------------------------------------------------------------

    async def on_connect(self, connect: Connect) -> bool:
        try:
            session = handshake.negotiate(connect, self.limits, self._authorize)
        except handshake.Refused as refused:
            if refused.connack is not None:
                self.send(refused.connack)
            raise
        self.keep_alive_timeout = session.keep_alive_timeout
        self.will = session.will
        await self.router.register(self)
        if session.session5 is not None:
            self.session5 = session.session5
            self.outbox.receive_maximum = session.session5.receive_maximum
        self.send(session.connack())
        self.connacked = True
        log.info(
            "%s connected (MQTT %s, keep-alive %ss)",
            self.name,
            "5" if session.mqtt5 else "3.1.1",
            session.keep_alive,
        )
        return True

    def _authorize(self, client_id: str, protocol_level: int) -> str | None:
        # The router decides on the connection as it will be known (its name in the log, its
        # certificate), so the client id and protocol are this connection's from here on.
        self.client_id = client_id
        self.protocol_level = protocol_level
        return self.router.authorize(self)

    async def on_publish(self, publish: Publish) -> None:
        if publish.qos == 2:
            raise ProtocolError(
                "PUBLISH with QoS 2 (AWS IoT supports QoS 0 and 1)", packets5.QOS_NOT_SUPPORTED
            )
        if self.session5 is not None:
            self.session5.resolve_topic(publish)
        topics.check_topic_name(
            publish.topic, max_bytes=self.limits.max_topic_bytes, max_slashes=self.limits.max_topic_slashes
        )
        if len(publish.payload) > self.limits.max_payload_bytes:
            raise ProtocolError(
                f"payload of {len(publish.payload)} bytes exceeds the limit "
                f"of {self.limits.max_payload_bytes}",
                packets5.PACKET_TOO_LARGE,
            )
        if publish.qos == 1 and publish.packet_id is not None:
            # PUBACK first: AWS does not order PUBACK and responses (AWS's docs say so), and a
            # response must never wait for our acknowledgement. Always 0x00, also when nobody
            # subscribed: AWS IoT does not send 0x10 No matching subscribers.
            self.send(packets5.puback(publish.packet_id) if self.mqtt5 else packets.puback(publish.packet_id))
        await self.router.route(self, publish)

    def on_subscribe(self, subscribe: Subscribe) -> None:
        codes, refused = self.subscriptions.subscribe(subscribe, mqtt5=self.mqtt5)
        if refused:
            # One line per packet: a SUBSCRIBE of thousands of filters must not flood the log.
            log.warning(
                "%s: %d of %d subscriptions refused: %s%s",
                self.name,
                len(refused),
                len(subscribe.filters),
                "; ".join(refused[:REFUSALS_LOGGED]),
                "; ..." if len(refused) > REFUSALS_LOGGED else "",
            )
        if self.mqtt5:
            self.send(packets5.suback(subscribe.packet_id, codes))
        else:
            codes = [code if code <= 1 else packets.SUBACK_FAILURE for code in codes]
            self.send(packets.suback(subscribe.packet_id, codes))

    def on_unsubscribe(self, unsubscribe: Unsubscribe) -> None:
        codes = [
            packets5.SUCCESS
            if self.subscriptions.unsubscribe(topic_filter)
            else packets5.NO_SUBSCRIPTION_EXISTED
            for topic_filter in unsubscribe.filters
        ]
        self.send(
            packets5.unsuback(unsubscribe.packet_id, codes)
            if self.mqtt5
            else packets.unsuback(unsubscribe.packet_id)
        )

    def on_packet_id(self, packet: PacketId) -> None:
        if packet.kind != packets.PUBACK:
            raise ProtocolError(
                f"{packets.PACKET_NAMES[packet.kind]}: QoS 2 is not supported", packets5.PROTOCOL_ERROR
            )
        if not self.outbox.acknowledge(packet.packet_id):
            # A late or duplicate PUBACK: nothing to do, and no reason to drop the client.
            log.debug("%s: PUBACK for unknown packet id %d ignored", self.name, packet.packet_id)

    # -- sending -----------------------------------------------------------------------------

    def deliver(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        publish_properties: Properties | None = None,
        *,
        sender: Connection | None = None,
    ) -> bool:
        """Send a message if this connection subscribed to it; report whether it was sent.

        The QoS is the lower of `qos` and the granted QoS; MQTT 5 clients get the properties
        given (none for fleet-provisioning answers, as AWS sends them).
        """
        granted = self.subscriptions.granted_qos(topic, own_publish=sender is self)
        if granted is None or self.closed.is_set() or self._aborted:
            return False
        qos = min(qos, granted)
        if self.session5 is None:
            if qos:
                self.outbox.send_qos1(
                    lambda packet_id: packets.publish(topic, payload, 1, packet_id), len(payload) + len(topic)
                )
            else:
                self.send(packets.publish(topic, payload))
            return True

        def encode(packet_id: int) -> bytes:
            return packets5.publish(topic, payload, qos, packet_id, publish_properties)

        size = len(encode(1))
        if size > self.session5.client_maximum_packet_size:
            # MQTT 5.0 section 3.1.2.11.4: a packet larger than the client allows is discarded.
            log.info(
                "%s: %d-byte message on %r not sent: above the client's maximum packet size",
                self.name,
                size,
                topic[:80],
            )
            return False
        if qos:
            self.outbox.send_qos1(encode, size)
        else:
            self.send(encode(0))
        return True

    def send(self, data: bytes) -> None:
        self.outbox.send(data)
