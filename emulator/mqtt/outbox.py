"""The sending side of one connection: ordered, delayed, bounded, with a QoS 1 in-flight window.

Every packet goes through one writer task, so packets stay in order and `send_delay` (the
simulated network round trip) applies uniformly. QoS 1 publishes get packet identifiers not in
use and wait for a free slot when the client's Receive Maximum of unacknowledged ones is reached
(MQTT 5.0 section 4.9). Bytes queued and waiting count towards one limit: a client that stops
reading is reported through `on_overflow` instead of growing our memory without end.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from emulator.mqtt.transport import Transport

Encoder = Callable[[int], bytes]  # packet id -> the encoded PUBLISH


class Outbox:
    def __init__(
        self,
        transport: Transport,
        *,
        send_delay: float,
        max_queued_bytes: int,
        on_overflow: Callable[[str], None],
    ) -> None:
        self.transport = transport
        self.send_delay = send_delay
        self.max_queued_bytes = max_queued_bytes
        self.on_overflow = on_overflow
        self.receive_maximum = 65535  # MQTT 5 default; 3.1.1 is bounded by packet ids only
        self._queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()
        self._queued_bytes = 0
        self._in_flight: set[int] = set()
        self._waiting: deque[tuple[Encoder, int]] = deque()
        self._waiting_bytes = 0
        self._next_packet_id = 0
        self._stopped = False

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def send(self, data: bytes) -> None:
        if self._stopped:
            return
        self._queued_bytes += len(data)
        if self._check_limit():
            loop = asyncio.get_running_loop()
            self._queue.put_nowait((loop.time() + self.send_delay, data))

    def send_qos1(self, encode: Encoder, size: int) -> None:
        """Send a QoS 1 PUBLISH now, or once the in-flight window has room."""
        if self._stopped:
            return
        if self._waiting or len(self._in_flight) >= self.receive_maximum:
            self._waiting.append((encode, size))
            self._waiting_bytes += size
            self._check_limit()
            return
        self.send(encode(self._allocate()))

    def acknowledge(self, packet_id: int) -> bool:
        """Take a PUBACK; False for an identifier we are not waiting for (it is ignored)."""
        if packet_id not in self._in_flight:
            return False
        self._in_flight.discard(packet_id)
        while self._waiting and len(self._in_flight) < self.receive_maximum:
            encode, size = self._waiting.popleft()
            self._waiting_bytes -= size
            self.send(encode(self._allocate()))
        return True

    def _allocate(self) -> int:
        while True:
            self._next_packet_id = self._next_packet_id % 65535 + 1
            if self._next_packet_id not in self._in_flight:
                self._in_flight.add(self._next_packet_id)
                return self._next_packet_id

    def _check_limit(self) -> bool:
        total = self._queued_bytes + self._waiting_bytes
        if total <= self.max_queued_bytes:
            return True
        self.discard()
        self.on_overflow(f"{total} bytes queued unread (limit {self.max_queued_bytes})")
        return False

    def finish(self) -> None:
        """Let the writer end once everything queued so far is written."""
        self._queue.put_nowait((0.0, None))

    def discard(self) -> None:
        """Drop everything unsent and stop accepting more (the connection is being aborted)."""
        self._stopped = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._waiting.clear()
        self._in_flight.clear()
        self._queued_bytes = self._waiting_bytes = 0
        self.finish()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await self._queue.get()
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
