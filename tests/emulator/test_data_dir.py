"""Where the emulator keeps its state: the directory it is given, or a temporary one of its own."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from emulator import Emulator
from emulator.errors import EmulatorError


def test_without_a_data_dir_its_state_lives_in_a_temporary_directory_removed_at_stop() -> None:
    with Emulator(key_algorithm="ec", key_pool_size=1) as emulator:
        own = emulator.data_dir
        assert (own / "ca.pem").is_file() and (own / "registry.sqlite3").is_file()
        assert own.name.startswith("iot-emulator-")
    assert not own.exists()


def test_a_given_data_dir_is_kept_with_its_ca_for_the_next_start(tmp_path: Path) -> None:
    with Emulator(data_dir=tmp_path, key_algorithm="ec", key_pool_size=1) as emulator:
        first_ca = emulator.authority.ca_path.read_bytes()
    assert (tmp_path / "ca.pem").read_bytes() == first_ca
    with Emulator(data_dir=tmp_path, key_algorithm="ec", key_pool_size=1) as again:
        assert again.authority.ca_path.read_bytes() == first_ca


def test_an_emulator_that_cannot_start_removes_its_temporary_directory() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        emulator = Emulator(mqtt_port=taken.getsockname()[1], key_algorithm="ec", key_pool_size=1)
        own = emulator.data_dir
        with pytest.raises(EmulatorError, match="failed to start"):
            emulator.start()
    assert not own.exists()
