"""The EST door over real HTTP: the real app on a loopback socket (the `serve` fixtures of
tests/service/conftest.py), the real emulator behind it, a real SQLite store.

Fixtures
    est_service   est_service(**env) -> EstClient (tests/support/est_client.py): the real stack
                  on the shared emulator (start_service); cacerts answers the emulator's CA
                  (PROVISIONER_CA_FILE) unless env says otherwise
    est_offline   an EstClient of the app whose broker is not there (`api`): for everything
                  answered before AWS IoT is asked
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from est_client import EstClient


@pytest.fixture
def est_service(start_service: Callable[..., Any], emulator: Any) -> Callable[..., EstClient]:
    def start(**env: str) -> EstClient:
        api = start_service(**env)
        return EstClient(api.base_url, api.key, api)

    return start


@pytest.fixture
def est_offline(api: Any) -> EstClient:
    return EstClient(api.base_url, api.key, api)
