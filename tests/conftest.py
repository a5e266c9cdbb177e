"""Shared fixtures: a real emulator on free loopback ports, and device-side key material."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from device_keys import make_csr

from emulator import Emulator


@pytest.fixture(scope="session")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    # EC keys for CreateKeysAndCertificate keep the suite fast; RSA is covered on its own.
    emulator = Emulator(data_dir=tmp_path_factory.mktemp("emulator"), key_algorithm="ec",
                        key_pool_size=2).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def emulator(shared_emulator: Emulator) -> Iterator[Emulator]:
    """The shared emulator with an empty registry and no faults."""
    shared_emulator.reset()
    yield shared_emulator
    shared_emulator.faults.clear()


@pytest.fixture
def device_csr() -> tuple[str, str]:
    return make_csr()


@pytest.fixture
def templates_dir(tmp_path: Path) -> Path:
    path = tmp_path / "templates"
    path.mkdir()
    return path
