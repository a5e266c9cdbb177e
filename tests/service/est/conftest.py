"""The EST door over real HTTP: the real app on a loopback socket (the `serve` fixtures of
tests/service/conftest.py), the real emulator behind it, a real SQLite store.

Fixtures
    est_service   est_service(**env) -> EstClient (tests/support/est_client.py): the real stack
                  on the shared emulator (start_service); cacerts answers the emulator's CA
                  (PROVISIONER_CA_FILE) unless env says otherwise
    est_offline   an EstClient of the app whose broker is not there (`api`): for everything
                  answered before AWS IoT is asked
    est_gunicorn  est_gunicorn(tls=None, *, client_ca=None, **env) -> EstClient: the service as
                  production runs it (gunicorn, service.serving.gunicorn_conf) in a subprocess on the
                  shared emulator, with an SQLite store and the emulator's control plane; over TLS
                  with `tls` (a ServerTls: `client.verify` is its CA), asking for a client
                  certificate issued by `client_ca` (optional, as Python's ssl can: it checks the
                  chain against that file) with `client_ca`
    server_tls    a test CA and a server certificate for 127.0.0.1 (est_client.ServerTls)
    est_production  est_production(**env) -> Production: `python -m service.serving.production` with its
                  mutual-TLS listener (nginx, `ssl_verify_client optional_no_ca`) on server_tls,
                  on the shared emulator; skipped without nginx, except in CI
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from est_client import EstClient, ServerTls, make_server_tls
from served import API_KEY, emulator_env, free_port, gunicorn_env, start_gunicorn, stop, wait_ready

from emulator import Emulator

HAVE_NGINX = shutil.which("nginx") is not None or os.access("/usr/sbin/nginx", os.X_OK)


@pytest.fixture
def est_service(start_service: Callable[..., Any], emulator: Any) -> Callable[..., EstClient]:
    def start(**env: str) -> EstClient:
        api = start_service(**env)
        return EstClient(api.base_url, api.key, api)

    return start


@pytest.fixture
def est_offline(api: Any) -> EstClient:
    return EstClient(api.base_url, api.key, api)


@pytest.fixture
def server_tls(tmp_path: Path) -> ServerTls:
    return make_server_tls(tmp_path / "server-tls")


@pytest.fixture
def est_gunicorn(emulator: Emulator, tmp_path: Path) -> Iterator[Callable[..., EstClient]]:
    started: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "gunicorn.log"

    def start(tls: ServerTls | None = None, *, client_ca: Path | None = None, **env: str) -> EstClient:
        port = free_port()
        environment = gunicorn_env(
            emulator,
            port,
            workers=1,
            database=tmp_path / "provisioner.db",
            PROVISIONER_CONTROL_ENDPOINT=emulator.urls["control-tls"],
            PROVISIONER_CONTROL_CA_FILE=str(emulator.ca_path),
            PROVISIONER_ORPHAN_SWEEP_SECONDS="0",
            **env,
        )
        arguments: list[str] = []
        if tls is not None:
            arguments += ["--certfile", str(tls.cert_path), "--keyfile", str(tls.key_path)]
        if client_ca is not None:  # ask for a client certificate, issued by client_ca (optional)
            arguments += ["--cert-reqs", "1", "--ca-certs", str(client_ca)]
        process = start_gunicorn(environment, log, *arguments)
        started.append(process)
        client = EstClient(
            f"{'https' if tls else 'http'}://127.0.0.1:{port}",
            API_KEY,
            verify=str(tls.ca_path) if tls is not None else True,
        )
        wait_ready(client.base_url, process, verify=client.verify)
        return client

    yield start
    for process in started:
        assert stop(process) == 0, log.read_text()[-3000:]


@dataclass
class Production:
    """`python -m service.serving.production` with its mutual-TLS listener: nginx in front of gunicorn."""

    est: EstClient  # over TLS (nginx's ssl listener)
    plain_url: str  # nginx's plain HTTP listener (the admin API, /readyz)
    database_url: str


@pytest.fixture
def est_production(
    emulator: Emulator, tmp_path: Path, server_tls: ServerTls
) -> Iterator[Callable[..., Production]]:
    """est_production(**env) -> Production: the production shape on the shared emulator, an
    SQLite store (`database_url`, for registering device CAs before it starts), the emulator's
    control plane; stopped (and checked to stop) at teardown. Needs Debian's nginx."""
    if not HAVE_NGINX and os.environ.get("CI") != "true":
        pytest.skip("nginx is not installed (apt-get install nginx)")
    started: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "production.log"

    def start(**env: str) -> Production:
        port, tls_port = free_port(), free_port()
        database_url = f"sqlite:///{tmp_path / 'provisioner.db'}"
        environment = emulator_env(
            emulator,
            PROVISIONER_BIND=f"127.0.0.1:{port}",
            PROVISIONER_TLS_BIND=f"127.0.0.1:{tls_port}",
            PROVISIONER_TLS_CERT=str(server_tls.cert_path),
            PROVISIONER_TLS_KEY=str(server_tls.key_path),
            PROVISIONER_WORKERS="1",
            PROVISIONER_DATABASE_URL=database_url,
            PROVISIONER_CONTROL_ENDPOINT=emulator.urls["control-tls"],
            PROVISIONER_CONTROL_CA_FILE=str(emulator.ca_path),
            PROVISIONER_ORPHAN_SWEEP_SECONDS="0",
            **env,
        )
        run_dir = tmp_path / f"run-{len(started)}"
        with open(log, "ab") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "service.serving.production", "--run-dir", str(run_dir)],
                env=environment,
                stdout=output,
                stderr=output,
            )
        started.append(process)
        client = EstClient(f"https://127.0.0.1:{tls_port}", API_KEY, verify=str(server_tls.ca_path))
        wait_ready(client.base_url, process, verify=client.verify)
        return Production(client, f"http://127.0.0.1:{port}", database_url)

    yield start
    for process in started:
        assert stop(process) == 0, log.read_text()[-3000:]
