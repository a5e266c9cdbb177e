"""Byte transports under an MQTT connection: asyncio streams (TCP, TLS) and WebSocket frames."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from emulator.mqtt.errors import ProtocolError


class Transport(Protocol):
    kind: str  # "tcp", "tls", "ws" or "wss"
    peer: str  # "host:port", for logs
    client_certificate_der: bytes | None

    async def read(self) -> bytes:  # b"" at end of stream
        ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...

    def abort(self) -> None:
        """Drop the connection at once with a reset, discarding unsent data (no graceful flush)."""
        ...


def reset_on_close(sock: socket.socket | None) -> None:
    """Make closing `sock` a reset (SO_LINGER on, 0 s): the kernel drops what is unsent at once.

    For a client that stopped reading: closed gracefully, the socket would stay in FIN-WAIT-1
    for minutes, the kernel holding everything queued for it (megabytes per connection) and
    retrying against a zero window. A broker flooded by such clients must let go of them.
    """
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def set_nodelay(sock: socket.socket | None) -> None:
    # Nagle plus delayed ACK adds ~40 ms per request/response round trip on small MQTT packets
    # (measured); the emulator must not be the slow end.
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class StreamTransport:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str) -> None:
        self._reader = reader
        self._writer = writer
        self.kind = kind
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        set_nodelay(writer.get_extra_info("socket"))
        ssl_object = writer.get_extra_info("ssl_object")
        self.client_certificate_der = (
            ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        )

    async def read(self) -> bytes:
        try:
            return await self._reader.read(65536)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        if self._writer.is_closing():
            return
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 2)
        except (ConnectionError, OSError, TimeoutError):
            pass

    def abort(self) -> None:
        reset_on_close(self._writer.get_extra_info("socket"))
        self._writer.transport.abort()


class WebSocketTransport:
    """MQTT over WebSocket: binary frames carry a byte stream (packets may span frames)."""

    def __init__(self, websocket: ServerConnection, kind: str) -> None:
        self._ws = websocket
        self.kind = kind
        peer = websocket.remote_address or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        set_nodelay(websocket.transport.get_extra_info("socket"))
        ssl_object = websocket.transport.get_extra_info("ssl_object")
        self.client_certificate_der = None
        if ssl_object is not None:
            self.client_certificate_der = ssl_object.getpeercert(binary_form=True)

    async def read(self) -> bytes:
        try:
            message = await self._ws.recv()
        except ConnectionClosed:
            return b""
        if isinstance(message, str):
            # MQTT over WebSocket: "MQTT Control Packets MUST be sent in WebSocket binary data
            # frames" (MQTT 3.1.1 section 6).
            raise ProtocolError("WebSocket text frame received; MQTT needs binary frames")
        return message

    async def write(self, data: bytes) -> None:
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise ConnectionResetError("websocket closed") from exc

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._ws.close(), 2)
        except (ConnectionError, OSError, TimeoutError):
            pass

    def abort(self) -> None:
        reset_on_close(self._ws.transport.get_extra_info("socket"))
        self._ws.transport.abort()
