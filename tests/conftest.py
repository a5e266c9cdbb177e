"""Shared fixtures: a real emulator on free loopback ports, device-side key material, and databases
(SQLite, or a throwaway PostgreSQL cluster started once per session, only when a test asks for it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from device_keys import make_csr
from postgres import PostgresServer, find_bindir

from emulator import Emulator


@pytest.fixture(scope="session")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    # EC keys for CreateKeysAndCertificate keep the suite fast; RSA is covered on its own.
    emulator = Emulator(
        data_dir=tmp_path_factory.mktemp("emulator"), key_algorithm="ec", key_pool_size=2
    ).start()
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


POSTGRES_MISSING = "PostgreSQL 15 not installed (apt-get install postgresql)"


def postgres_bindir() -> Path:
    """Where PostgreSQL's binaries are. Missing: with CI=true the test fails; elsewhere it is skipped."""
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                f"{POSTGRES_MISSING}; CI=true, so the PostgreSQL tests fail instead of skipping",
                pytrace=False,
            )
        pytest.skip(POSTGRES_MISSING)
    return bindir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the whole session, started by the first test that needs it."""
    server = PostgresServer(postgres_bindir()).start()
    yield server
    server.stop()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A cluster of the test's own, for a test that stops it: stopping it must not touch the session's."""
    server = PostgresServer(postgres_bindir()).start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of the session cluster: ``postgresql+psycopg://postgres@127.0.0.1:<port>/<db>``.

    Dropped after the test (connections still open are cut).
    """
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test twice: on a SQLite file in tmp_path, and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")
