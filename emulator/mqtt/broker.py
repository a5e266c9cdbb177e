"""Routing between connections: client ids, ordinary pub/sub, and reserved-topic handlers.

The broker is the one registry of connections: every accepted one while it is served
(`serve`), and the CONNECTed ones by client id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from emulator.mqtt import packets5
from emulator.mqtt.connection import Connection
from emulator.mqtt.packets import Publish

log = logging.getLogger("emulator.mqtt")


class ReservedTopicHandler(Protocol):
    def handle(self, connection: Connection, publish: Publish) -> bool:
        """Take a publish to a `$`-topic; return False if the topic is not one it serves."""
        ...


Authorizer = Callable[[Connection], str | None]  # returns a refusal reason, or None


class Broker:
    def __init__(
        self, reserved_handler: ReservedTopicHandler | None = None, authorizer: Authorizer | None = None
    ) -> None:
        self.reserved_handler = reserved_handler
        self.authorizer = authorizer
        self._open: set[Connection] = set()  # accepted, CONNECTed or not yet
        self._by_client_id: dict[str, Connection] = {}

    @property
    def connections(self) -> list[Connection]:
        """Every open connection, including those that have not sent CONNECT yet."""
        return list(self._open)

    async def serve(self, connection: Connection) -> None:
        """Serve one accepted connection until it ends."""
        self._open.add(connection)
        try:
            await connection.serve()
        finally:
            self._open.discard(connection)

    def authorize(self, connection: Connection) -> str | None:
        return self.authorizer(connection) if self.authorizer else None

    async def register(self, connection: Connection) -> None:
        assert connection.client_id is not None
        older = self._by_client_id.get(connection.client_id)
        self._by_client_id[connection.client_id] = connection
        if older is not None and older is not connection:
            # AWS IoT: a second connection with the same client ID disconnects the first.
            # An MQTT 5 client is told why: DISCONNECT 0x8E Session taken over.
            await older.close(
                f"client id {connection.client_id!r} connected again from {connection.transport.peer}",
                reason_code=packets5.SESSION_TAKEN_OVER,
            )

    def unregister(self, connection: Connection) -> None:
        if connection.client_id and self._by_client_id.get(connection.client_id) is connection:
            del self._by_client_id[connection.client_id]

    async def route(self, sender: Connection, publish: Publish) -> None:
        if publish.topic.startswith("$"):
            if self.reserved_handler is None or not self.reserved_handler.handle(sender, publish):
                log.warning(
                    "%s published to reserved topic %r: dropped (not an emulated API)",
                    sender.name,
                    publish.topic[:120],
                )
            return
        for connection in list(self._by_client_id.values()):
            connection.deliver(publish.topic, publish.payload, publish.qos, publish.properties, sender=sender)

    async def close_all(self, reason: str) -> None:
        """Close every open connection (shutdown, or a test dropping everyone), all at once."""
        await asyncio.gather(*(c.close(reason) for c in self.connections), return_exceptions=True)
