"""The emulator's own tests: raw sockets opened through tests/support/raw_sockets.py are closed after each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import raw_sockets


@pytest.fixture(autouse=True)
def _close_raw_sockets() -> Iterator[None]:
    yield
    raw_sockets.close_all()
