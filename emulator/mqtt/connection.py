"""One client connection: reads packets, answers them, one `on_<packet>` method per type.

Every protocol violation raises ProtocolError; `serve()` logs it with the reason and closes this
connection only. Outgoing packets go through one writer task so they stay in order and can be
delayed uniformly (`send_delay`, the simulated network round trip).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import secrets
from collections import OrderedDict
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from emulator.config import Limits
from emulator.errors import ProtocolError
from emulator.mqtt import packets, topics
from emulator.mqtt.packets import Bare, Connect, PacketId, Publish, Subscribe, Unsubscribe
from emulator.mqtt.transport import Transport

if TYPE_CHECKING:
    from emulator.mqtt.broker import Broker

log = logging.getLogger("emulator.mqtt")
_connection_numbers = itertools.count(1)


class Connection:
    def __init__(self, broker: Broker, transport: Transport, *, limits: Limits,
                 send_delay: float = 0.0) -> None:
        self.broker = broker
        self.transport = transport
        self.limits = limits
        self.send_delay = send_delay
        self.number = next(_connection_numbers)
        self.client_id: str | None = None
        self.subscriptions: OrderedDict[str, int] = OrderedDict()   # filter -> granted QoS
        self.will: Publish | None = None
        self.closed = asyncio.Event()
        self._buffer = bytearray()
        self._keep_alive_timeout: float | None = None
        self._outbox: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        self._next_packet_id = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._clean_exit = False
        self._queued_bytes = 0
        self._overflowed = False

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

    # -- lifecycle ---------------------------------------------------------------------------

    async def serve(self) -> None:
        writer = asyncio.create_task(self._write_loop())
        try:
            connect = await self._read_first_packet()
            if await self.on_connect(connect):
                while True:
                    packet = await self._read_packet(self._keep_alive_timeout)
                    if packet is None:
                        break
                    if isinstance(packet, Bare) and packet.kind == packets.DISCONNECT:
                        self._clean_exit = True
                        break
                    await self._dispatch(packet)
        except ProtocolError as exc:
            log.warning("%s disconnected: %s", self.name, exc)
        except TimeoutError:
            log.info("%s disconnected: keep-alive expired (no packet within %.0f s)",
                     self.name, self._keep_alive_timeout or self.limits.connect_timeout)
        except (ConnectionError, OSError) as exc:
            log.info("%s connection lost: %s", self.name, exc.__class__.__name__)
        finally:
            await self._shutdown(writer)

    async def _shutdown(self, writer: asyncio.Task[None]) -> None:
        self.broker.unregister(self)
        if not self._clean_exit and self.will is not None:
            # MQTT 3.1.1 section 3.1.2.5: the will is published when the connection ends abnormally.
            await self.broker.route(self, self.will)
        self._outbox.put_nowait((0.0, None))
        try:
            await asyncio.wait_for(writer, 2 + self.send_delay)
        except (TimeoutError, ConnectionError, OSError):
            writer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.transport.close()
        self.closed.set()
        if self.client_id is not None:
            log.info("%s closed", self.name)

    async def close(self, reason: str) -> None:
        """Close from the server side (duplicate client id, injected fault, shutdown)."""
        log.info("%s closed by server: %s", self.name, reason)
        self._clean_exit = True   # no will for server-side closes we chose
        await self.transport.close()

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

    async def _read_packet(self, timeout: float | None) -> packets.Packet | None:
        max_body = self.limits.max_payload_bytes + self.limits.max_topic_bytes + 16
        async with asyncio.timeout(timeout):
            while True:
                if len(self._buffer) >= 2:
                    header = packets.decode_remaining_length(bytes(self._buffer[1:5]))
                    if header is not None:
                        length, used = header
                        if length > max_body:
                            raise ProtocolError(
                                f"packet of {length} bytes exceeds the payload limit "
                                f"({self.limits.max_payload_bytes} bytes)")
                        end = 1 + used + length
                        if len(self._buffer) >= end:
                            first, body = self._buffer[0], bytes(self._buffer[1 + used:end])
                            del self._buffer[:end]
                            return packets.decode(first, body)
                chunk = await self.transport.read()
                if not chunk:
                    if self._buffer:
                        raise ProtocolError("connection closed in the middle of a packet")
                    return None
                self._buffer += chunk

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
            raise ProtocolError("second CONNECT on one connection")

    # -- packets -----------------------------------------------------------------------------

    async def on_connect(self, connect: Connect) -> bool:
        if connect.protocol_name != "MQTT" or connect.protocol_level != 4:
            # AWS IoT speaks MQTT 3.1.1 (and 5, which this emulator does not).
            self.send(packets.connack(False, packets.UNACCEPTABLE_PROTOCOL))
            raise ProtocolError(f"unsupported protocol {connect.protocol_name!r} level "
                                f"{connect.protocol_level} (MQTT 3.1.1 only)")
        client_id = connect.client_id
        if len(client_id.encode("utf-8")) > self.limits.max_client_id_bytes:
            self.send(packets.connack(False, packets.IDENTIFIER_REJECTED))
            raise ProtocolError(f"client id longer than {self.limits.max_client_id_bytes} bytes")
        if not client_id:
            if not connect.clean_session:
                self.send(packets.connack(False, packets.IDENTIFIER_REJECTED))
                raise ProtocolError("empty client id without clean session")
            client_id = "auto-" + secrets.token_hex(8)
        if connect.will_qos == 2:
            self.send(packets.connack(False, packets.NOT_AUTHORIZED))
            raise ProtocolError("will QoS 2 is not supported (AWS IoT supports QoS 0 and 1)")
        self.client_id = client_id
        refusal = self.broker.authorize(self)
        if refusal:
            # AWS closes the connection of a refused certificate without a CONNACK.
            raise ProtocolError(f"not authorized: {refusal}")
        # AWS clamps keep-alive into 30-1200 s; 0 (off in MQTT) is taken as the maximum here, so
        # a silent client is still dropped (AWS's handling of 0 is unconfirmed).
        keep_alive = connect.keep_alive or self.limits.max_keep_alive
        keep_alive = min(max(keep_alive, self.limits.min_keep_alive), self.limits.max_keep_alive)
        self._keep_alive_timeout = keep_alive * 1.5
        if connect.will_topic is not None:
            topics.check_topic_name(connect.will_topic, max_bytes=self.limits.max_topic_bytes,
                                    max_slashes=self.limits.max_topic_slashes)
            self.will = Publish(connect.will_topic, connect.will_payload or b"",
                                qos=connect.will_qos)
        await self.broker.register(self)
        # Sessions are always clean here: a persistent-session request is served as a new
        # session and says so with session present = 0.
        self.send(packets.connack(False, packets.ACCEPTED))
        log.info("%s connected (keep-alive %ss)", self.name, keep_alive)
        return True

    async def on_publish(self, publish: Publish) -> None:
        if publish.qos == 2:
            raise ProtocolError("PUBLISH with QoS 2 (AWS IoT supports QoS 0 and 1)")
        topics.check_topic_name(publish.topic, max_bytes=self.limits.max_topic_bytes,
                                max_slashes=self.limits.max_topic_slashes)
        if len(publish.payload) > self.limits.max_payload_bytes:
            raise ProtocolError(f"payload of {len(publish.payload)} bytes exceeds the limit "
                                f"of {self.limits.max_payload_bytes}")
        if publish.qos == 1 and publish.packet_id is not None:
            # PUBACK first: AWS does not order PUBACK and responses (reference section 2), and a
            # response must never wait for our acknowledgement.
            self.send(packets.puback(publish.packet_id))
        await self.broker.route(self, publish)

    def on_subscribe(self, subscribe: Subscribe) -> None:
        codes: list[int] = []
        too_many_filters = len(subscribe.filters) > self.limits.max_filters_per_subscribe
        for topic_filter, requested_qos in subscribe.filters:
            topics.check_topic_filter(topic_filter, max_bytes=self.limits.max_topic_bytes,
                                      max_slashes=self.limits.max_topic_slashes)
            is_new = topic_filter not in self.subscriptions
            if too_many_filters or (
                    is_new and len(self.subscriptions) >= self.limits.max_subscriptions):
                codes.append(packets.SUBACK_FAILURE)
                why = (f"more than {self.limits.max_filters_per_subscribe} filters in one "
                       "SUBSCRIBE" if too_many_filters
                       else f"limit of {self.limits.max_subscriptions} subscriptions")
                log.warning("%s: subscription to %r refused (%s)", self.name, topic_filter, why)
                continue
            granted = min(requested_qos, 1)    # QoS 2 is granted as 1, as AWS does
            self.subscriptions[topic_filter] = granted
            codes.append(granted)
        self.send(packets.suback(subscribe.packet_id, codes))

    def on_unsubscribe(self, unsubscribe: Unsubscribe) -> None:
        for topic_filter in unsubscribe.filters:
            self.subscriptions.pop(topic_filter, None)
        self.send(packets.unsuback(unsubscribe.packet_id))

    def on_packet_id(self, packet: PacketId) -> None:
        if packet.kind != packets.PUBACK:
            raise ProtocolError(f"{packets.PACKET_NAMES[packet.kind]}: QoS 2 is not supported")
        # PUBACKs for our QoS 1 deliveries: nothing is retried, so nothing to clear.

    # -- sending -----------------------------------------------------------------------------

    def granted_qos(self, topic: str) -> int | None:
        """The highest QoS of this connection's filters matching `topic`, or None."""
        best: int | None = None
        for topic_filter, qos in self.subscriptions.items():
            if topics.matches(topic_filter, topic) and (best is None or qos > best):
                best = qos
        return best

    def deliver(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Send a message if this connection subscribed to it; report whether it was sent."""
        granted = self.granted_qos(topic)
        if granted is None or self.closed.is_set():
            return False
        qos = min(qos, granted)
        packet_id = None
        if qos:
            self._next_packet_id = self._next_packet_id % 65535 + 1
            packet_id = self._next_packet_id
        self.send(packets.publish(topic, payload, qos, packet_id))
        return True

    def send(self, data: bytes) -> None:
        if self._overflowed:
            return
        self._queued_bytes += len(data)
        if self._queued_bytes > self.limits.max_queued_bytes:
            # A client that does not read would make us buffer without end: drop it, as
            # brokers drop slow consumers.
            self._overflowed = True
            self.spawn(self.close(f"{self._queued_bytes} bytes queued unread "
                                  f"(limit {self.limits.max_queued_bytes})"))
            return
        loop = asyncio.get_running_loop()
        self._outbox.put_nowait((loop.time() + self.send_delay, data))

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await self._outbox.get()
            if data is None:
                return
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._queued_bytes -= len(data)
            try:
                await self.transport.write(data)
            except (ConnectionError, OSError):
                # The reader side notices the closed transport and ends the connection.
                await self.transport.close()
                return
