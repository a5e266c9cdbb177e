"""Network listeners: plain TCP, TLS with client certificates, WebSocket and WebSocket over TLS
for MQTT; HTTP and HTTPS for the control plane.

Authentication happens here, at the door, as AWS IoT does it: TLS client certificates must chain
to the emulator's CA (and pass the registry check at CONNECT), WebSocket upgrades must carry a
valid SigV4 presigned query string or get HTTP 403 with the reason. The control plane checks its
requests' signatures itself (`emulator/control/service.py`), as AWS's answer to a bad one is part
of its API.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from emulator.config import EmulatorConfig
from emulator.control.http import Application, HttpConnection
from emulator.errors import AuthError
from emulator.mqtt.broker import Broker
from emulator.mqtt.connection import Connection
from emulator.mqtt.transport import StreamTransport, Transport, WebSocketTransport
from emulator.security.pki import CertificateAuthority
from emulator.security.sigv4 import verify_presigned_request

log = logging.getLogger("emulator.listeners")
# websockets logs the upgrade request line at DEBUG, and a presigned URL is a credential for its
# lifetime: keep that logger at INFO whatever the root level is.
_websockets_log = logging.getLogger("emulator.websockets")
_websockets_log.setLevel(logging.INFO)

# AWS IoT accepts the "mqtt" subprotocol; AWS's JavaScript SDK (crt-js) sends "mqttv3.1".
SUBPROTOCOLS = ["mqtt", "mqttv3.1"]


# The control plane's listeners are named after their options; their URLs are plain HTTP(S).
_URL_SCHEMES = {"control": "http", "control-tls": "https"}


@dataclass
class Listener:
    scheme: str  # mqtt, mqtts, ws, wss, control, control-tls
    server: asyncio.Server | Server
    port: int

    def url(self, host: str) -> str:
        shown = f"[{host}]" if ":" in host else host
        path = "/mqtt" if self.scheme.startswith("ws") else ""
        return f"{_URL_SCHEMES.get(self.scheme, self.scheme)}://{shown}:{self.port}{path}"

    def close(self) -> None:
        self.server.close()


def server_tls_context(
    authority: CertificateAuthority, *, client_certificates: bool, alpn: list[str]
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # AWS IoT requires TLS 1.2+
    context.load_cert_chain(authority.server_cert_path, authority.server_key_path)
    if client_certificates:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(authority.ca_path)
    context.set_alpn_protocols(alpn)
    return context


class ListenerFactory:
    def __init__(
        self,
        config: EmulatorConfig,
        broker: Broker,
        authority: CertificateAuthority,
        clock: Callable[[], float],
        control: Application | None = None,
    ) -> None:
        self.config = config
        self.broker = broker
        self.control = control
        self.http_connections: set[HttpConnection] = set()
        self.authority = authority
        self.clock = clock

    async def start_all(self) -> list[Listener]:
        listeners: list[Listener] = []
        config = self.config
        if config.mqtt_port is not None:
            listeners.append(await self._stream("mqtt", config.mqtt_port, None))
        if config.mqtts_port is not None:
            context = server_tls_context(
                self.authority, client_certificates=True, alpn=["x-amzn-mqtt-ca", "mqtt"]
            )
            listeners.append(await self._stream("mqtts", config.mqtts_port, context))
        if config.ws_port is not None:
            listeners.append(await self._websocket("ws", config.ws_port, None))
        if config.wss_port is not None:
            context = server_tls_context(self.authority, client_certificates=False, alpn=["http/1.1"])
            listeners.append(await self._websocket("wss", config.wss_port, context))
        if self.control is not None and config.control_port is not None:
            listeners.append(await self._http("control", config.control_port, self.control, None))
        if self.control is not None and config.control_tls_port is not None:
            context = server_tls_context(self.authority, client_certificates=False, alpn=["http/1.1"])
            listeners.append(await self._http("control-tls", config.control_tls_port, self.control, context))
        return listeners

    async def _run(self, transport: Transport) -> None:
        connection = Connection(
            self.broker, transport, limits=self.config.limits, send_delay=self.config.send_delay
        )
        await self.broker.serve(connection)

    async def _stream(self, scheme: str, port: int, context: ssl.SSLContext | None) -> Listener:
        kind = "tls" if context else "tcp"

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._run(StreamTransport(reader, writer, kind))

        server = await asyncio.start_server(
            on_client, self.config.host, port, ssl=context, ssl_handshake_timeout=10 if context else None
        )
        return Listener(scheme, server, server.sockets[0].getsockname()[1])

    async def _http(
        self, scheme: str, port: int, application: Application, context: ssl.SSLContext | None
    ) -> Listener:
        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connection = HttpConnection(application, reader, writer, self.config.http_limits)
            self.http_connections.add(connection)
            try:
                await connection.serve()
            finally:
                self.http_connections.discard(connection)

        server = await asyncio.start_server(
            on_client, self.config.host, port, ssl=context, ssl_handshake_timeout=10 if context else None
        )
        return Listener(scheme, server, server.sockets[0].getsockname()[1])

    async def close_http(self) -> None:
        """End every control-plane connection (a request being answered is answered first)."""
        connections = list(self.http_connections)
        for connection in connections:
            connection.stop()
        waits = [asyncio.ensure_future(c.finished.wait()) for c in connections]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=2)
            for connection in connections:
                if not connection.finished.is_set():
                    connection.writer.transport.abort()  # mid-request past 2 s: drop it
            if pending:
                await asyncio.wait(pending, timeout=1)
            for wait in pending:
                wait.cancel()

    async def _websocket(self, scheme: str, port: int, context: ssl.SSLContext | None) -> Listener:
        async def handler(websocket: ServerConnection) -> None:
            await self._run(WebSocketTransport(websocket, scheme))

        server = await serve(
            handler,
            self.config.host,
            port,
            ssl=context,
            subprotocols=SUBPROTOCOLS,  # type: ignore[arg-type]
            process_request=self._check_upgrade,
            compression=None,
            max_size=self.config.limits.max_payload_bytes + 64 * 1024,
            ping_interval=None,  # MQTT has its own keep-alive
            logger=_websockets_log,
        )
        return Listener(scheme, server, server.sockets[0].getsockname()[1])

    async def _check_upgrade(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.config.send_delay:
            await asyncio.sleep(self.config.send_delay)  # the upgrade is a round trip too
        peer = connection.remote_address
        path = request.path.split("?", 1)[0]
        if path != "/mqtt":
            log.warning("WebSocket upgrade from %s refused: path %r is not /mqtt", peer, path)
            return connection.respond(HTTPStatus.NOT_FOUND, "path must be /mqtt\n")
        try:
            identity = verify_presigned_request(
                request.path,
                request.headers,
                self.config.credentials,
                now=datetime.fromtimestamp(self.clock(), UTC),
                max_age_without_expires=timedelta(seconds=self.config.sigv4_max_age),
            )
        except AuthError as exc:
            log.warning("WebSocket upgrade from %s refused (403): %s", peer, exc)
            return connection.respond(HTTPStatus.FORBIDDEN, f"SigV4 check failed: {exc}\n")
        log.debug("WebSocket upgrade from %s signed by %s", peer, identity.access_key_id)
        return None
