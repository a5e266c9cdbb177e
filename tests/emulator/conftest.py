"""The emulator's own tests.

Fixtures
    client   a paho MQTT client connected with the claim over plain MQTT to the `emulator` fixture
    client_not_reconnecting
             `client`, not reconnecting for 30 s: a disconnect by the emulator stays seen
    (autouse) raw sockets opened through tests/support/raw_sockets.py are closed after each test
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import raw_sockets
from mqtt_support import MqttTestClient

from emulator import Emulator


@pytest.fixture(autouse=True)
def _close_raw_sockets() -> Iterator[None]:
    yield
    raw_sockets.close_all()


@pytest.fixture
def client(emulator: Emulator) -> Iterator[MqttTestClient]:
    mqtt_client = MqttTestClient(emulator.urls["mqtt"]).connect()
    yield mqtt_client
    mqtt_client.close()


@pytest.fixture
def client_not_reconnecting(client: MqttTestClient) -> MqttTestClient:
    client.client.reconnect_delay_set(30, 60)  # no reconnect fighting the test
    return client
