"""The factory client against the real service: gunicorn on a SQLite store, on the real emulator.

Fixtures
    service         a running service (its own SQLite store in tmp_path, so API keys, enrollments,
                    idempotency and the audit work) on the `emulator` fixture; `service.admin` is
                    a requests session authorised with the bootstrap admin key
    factory_key     a provision key issued by POST /admin/keys: template demo, CSR only
    cli_env         the CLI's environment: IOT_FACTORY_URL (the service), IOT_FACTORY_API_KEY (factory_key)
    run_cli         run_cli(*args, **env) -> CompletedProcess of `python -m provisioner_client` with
                    cli_env updated by `env` (IOT_FACTORY_API_KEY="wrong" for another key)
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from factory_service import CLI, CLI_TIMEOUT, Service
from served import API_KEY, free_port, gunicorn_env, start_gunicorn, stop, wait_ready

from emulator import Emulator


@pytest.fixture
def service(emulator: Emulator, tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    env = gunicorn_env(emulator, port, workers=2, database=tmp_path / "store.db")
    log = tmp_path / "gunicorn.log"
    process = start_gunicorn(env, log)
    url = f"http://127.0.0.1:{port}"
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {API_KEY}"
    try:
        wait_ready(url, process)
        yield Service(url, admin, log)
    finally:
        admin.close()
        stop(process)


@pytest.fixture
def factory_key(service: Service) -> str:
    return service.create_key(templates=["demo"], serverKeys=False)


@pytest.fixture
def cli_env(service: Service, factory_key: str) -> dict[str, str]:
    """The environment of the CLI: the service's URL and the factory key, nothing of the service's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOT_FACTORY_", "PROVISIONER_"))}
    return {**env, "IOT_FACTORY_URL": service.url, "IOT_FACTORY_API_KEY": factory_key, "COLUMNS": "200"}


@pytest.fixture
def run_cli(cli_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env={**cli_env, **env}, capture_output=True, text=True, timeout=CLI_TIMEOUT
        )

    return run
