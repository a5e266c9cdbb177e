"""HTTP/1.1 for the control plane: h11 (sans-IO) driven over the emulator's asyncio streams.

The MQTT listeners read and write `asyncio` streams themselves; this does the same for HTTP, with
h11 parsing and framing the messages (keep-alive, chunked bodies, `Expect: 100-continue`,
malformed requests). Every request is read whole and bounded before the application sees it:

- the head within `max_header_bytes` (431 past it), arriving within `idle_timeout`;
- the body within `max_body_bytes` (413, from Content-Length before reading it, or while reading
  a chunked one) and `request_timeout` (408);
- a request h11 cannot parse gets 400 (or h11's own hint) and the connection is closed.

Those refusals are rendered by the application (`Application.refuse`), so they look like every
other error of the API. A client that goes away is just forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

import h11

from emulator.config import HttpLimits
from emulator.mqtt.transport import set_nodelay

log = logging.getLogger("emulator.control")

READ_CHUNK = 65536
CLOSE_WAIT = 0.5  # seconds a closing connection may take before it is dropped


class Headers:
    """Received headers: names lower-case, repeated ones kept (SigV4 joins them)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pairs = list(pairs)

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.pairs if key == name]

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.get_all(name)
        return values[0] if values else default


@dataclass
class HttpRequest:
    method: str
    target: str  # raw, as sent: path and query still percent-encoded
    headers: Headers
    body: bytes
    peer: str


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


class Application(Protocol):
    async def handle(self, request: HttpRequest) -> HttpResponse: ...

    def refuse(self, status: int, message: str) -> HttpResponse:
        """The response for a request refused before it was read whole."""
        ...


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HttpConnection:
    """One client connection: requests in turn, each answered before the next is read."""

    def __init__(
        self,
        application: Application,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        limits: HttpLimits,
    ) -> None:
        self.application = application
        self.reader = reader
        self.writer = writer
        self.limits = limits
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"
        set_nodelay(writer.get_extra_info("socket"))
        self.finished = asyncio.Event()
        self._stopping = False

    def stop(self) -> None:
        """End the connection once no request is being handled (the emulator is stopping)."""
        self._stopping = True
        if self.h11.their_state is h11.IDLE and not self.h11.trailing_data[0]:
            self.reader.feed_eof()  # waiting for a request: wake the read, which ends the loop

    async def serve(self) -> None:
        try:
            while True:
                try:
                    request = await self._read_request()
                except _Refusal as refusal:
                    log.warning("control plane: request from %s refused: %s", self.peer, refusal.message)
                    await self._send(self.application.refuse(refusal.status, refusal.message), close=True)
                    await self._discard_input()
                    return
                if request is None:
                    return
                response = await self.application.handle(request)
                await self._send(response, head_only=request.method == "HEAD")
                if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                    return  # Connection: close from either side, or HTTP/1.0
                if self._stopping:
                    return
                self.h11.start_next_cycle()
        except (ConnectionError, OSError, h11.LocalProtocolError) as exc:
            log.debug("control plane: connection from %s ended: %r", self.peer, exc)
        finally:
            await self._close()
            self.finished.set()

    async def _read_request(self) -> HttpRequest | None:
        try:
            head = await self._next_event(self.limits.idle_timeout, waiting=True)
        except TimeoutError:
            if self.h11.trailing_data[0]:
                raise _Refusal(HTTPStatus.REQUEST_TIMEOUT, "request head not received in time") from None
            return None  # an idle kept-alive connection: close it quietly
        if isinstance(head, h11.ConnectionClosed):
            return None
        if not isinstance(head, h11.Request):
            raise _Refusal(HTTPStatus.BAD_REQUEST, f"unexpected {type(head).__name__} instead of a request")
        headers = Headers((name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers)
        head_bytes = len(head.target) + sum(len(name) + len(value) + 4 for name, value in head.headers)
        if head_bytes > self.limits.max_header_bytes:
            # h11 bounds a head that is still arriving; one that arrived whole is measured here.
            raise _Refusal(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"request head of {head_bytes} bytes exceeds the limit of "
                f"{self.limits.max_header_bytes} bytes",
            )
        declared = headers.get("content-length")
        if declared is not None and int(declared) > self.limits.max_body_bytes:
            # h11 checked that it is a number; refuse before reading a byte of it.
            raise _Refusal(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {declared} bytes exceeds the limit of {self.limits.max_body_bytes} bytes",
            )
        if self.h11.they_are_waiting_for_100_continue:
            await self._write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = bytearray()
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                while True:
                    event = await self._next_event(None)
                    if isinstance(event, h11.EndOfMessage):
                        break
                    if isinstance(event, h11.ConnectionClosed):
                        return None
                    if isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > self.limits.max_body_bytes:
                            raise _Refusal(
                                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                f"request body exceeds the limit of {self.limits.max_body_bytes} bytes",
                            )
        except TimeoutError:
            raise _Refusal(
                HTTPStatus.REQUEST_TIMEOUT,
                f"request body not received within {self.limits.request_timeout:g} s",
            ) from None
        return HttpRequest(
            method=head.method.decode("ascii", "replace"),
            target=head.target.decode("ascii", "replace"),
            headers=headers,
            body=bytes(body),
            peer=self.peer,
        )

    async def _next_event(self, timeout: float | None, *, waiting: bool = False) -> object:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    event = self.h11.next_event()
                except h11.RemoteProtocolError as exc:
                    raise _Refusal(exc.error_status_hint, f"malformed HTTP request: {exc}") from None
                if event is not h11.NEED_DATA:
                    return event
                data = await self.reader.read(READ_CHUNK)
                self.h11.receive_data(data)  # b"" marks the end of the stream

    async def _send(self, response: HttpResponse, *, close: bool = False, head_only: bool = False) -> None:
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # nothing can be said any more on this connection
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            *response.headers,
        ]
        if close:
            headers.append(("connection", "close"))
        try:
            reason = HTTPStatus(response.status).phrase.encode()
        except ValueError:
            reason = b""
        data = self.h11.send(h11.Response(status_code=response.status, headers=headers, reason=reason))
        if response.body and not head_only:
            data += self.h11.send(h11.Data(data=response.body))
        data += self.h11.send(h11.EndOfMessage())
        await self._write(data)

    async def _discard_input(self) -> None:
        """After refusing a request mid-body: read what the client still sends (at most a
        second, at most 1 MiB), so that closing does not reset the connection before the client
        has read the refusal."""
        transport = self.writer.transport
        if transport.can_write_eof():
            transport.write_eof()
        discarded = 0
        try:
            async with asyncio.timeout(1.0):
                while discarded < 1024 * 1024:
                    chunk = await self.reader.read(READ_CHUNK)
                    if not chunk:
                        return
                    discarded += len(chunk)
        except (TimeoutError, ConnectionError, OSError):
            pass

    async def _write(self, data: bytes | None) -> None:
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def _close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        try:
            # Over TLS, closing waits for the client's close_notify, which a client keeping the
            # connection in its pool does not send until it reads again: drop it instead.
            await asyncio.wait_for(self.writer.wait_closed(), CLOSE_WAIT)
        except (ConnectionError, OSError, TimeoutError):
            self.writer.transport.abort()
