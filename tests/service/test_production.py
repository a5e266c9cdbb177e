"""The production shape (`python -m service.production`): nginx in front of gunicorn keeps slow
clients away from gunicorn's threads. Needs Debian's nginx: skipped without it, except in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from served import API_KEY, emulator_env, free_port, stop, wait_ready

from bench.slow_clients import SlowClients, measure
from emulator import Emulator
from service.production import render_nginx_config

REPO_ROOT = Path(__file__).resolve().parents[2]
HAVE_NGINX = shutil.which("nginx") is not None or os.access("/usr/sbin/nginx", os.X_OK)
needs_nginx = pytest.mark.skipif(
    not HAVE_NGINX and os.environ.get("CI") != "true", reason="nginx is not installed (apt-get install nginx)"
)


@pytest.fixture
def production(emulator: Emulator, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = emulator_env(emulator, PROVISIONER_BIND=f"127.0.0.1:{port}", PROVISIONER_WORKERS="1")
    run_dir = tmp_path / "run"
    with open(tmp_path / "production.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.production", "--run-dir", str(run_dir)],
            env=env,
            stdout=log,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        yield base, run_dir
    finally:
        assert stop(process) == 0, (tmp_path / "production.log").read_text()[-3000:]
    assert not (run_dir / "nginx.pid").exists()  # nginx stopped too


@needs_nginx
def test_slow_clients_through_nginx_leave_healthz_and_provisioning_fast(production: tuple[str, Path]) -> None:
    base, run_dir = production
    port = int(base.rsplit(":", 1)[1])
    # One worker with 4 threads (pool 2): direct, 80 slow connections would hold every thread.
    clients = SlowClients("127.0.0.1", port, API_KEY, headers=40, bodies=40).start()
    try:
        result = measure(base, API_KEY, seconds=4, provisions=8)
        held = clients.held()
    finally:
        clients.stop()
    assert held == 80, "nginx cut slow clients before its 10 s timeouts"
    assert result["healthz_failed"] == 0, result
    assert result["healthz_p99_ms"] < 100, result
    assert result["provision_failed"] == [] and result["provision_ok"] == 8, result
    assert "gunicorn.sock" in (run_dir / "nginx.conf").read_text()


@needs_nginx
def test_nginx_passes_the_request_id_and_sets_the_caller_address(production: tuple[str, Path]) -> None:
    base, _ = production
    response = requests.get(
        base + "/healthz", headers={"X-Request-Id": "trace-123", "X-Forwarded-For": "6.6.6.6"}, timeout=5
    )
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "trace-123"
    too_large = requests.post(
        base + "/provision",
        data=b"x" * 70_000,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
        timeout=5,
    )
    assert too_large.status_code == 413
    assert too_large.headers["Content-Type"] == "application/problem+json"
    assert too_large.json()["status"] == 413


def test_nginx_config_buffers_the_whole_body_and_matches_the_limit() -> None:
    text = render_nginx_config(
        listen="127.0.0.1:8000", upstream="unix:/run/x.sock", run_dir=Path("/run"), max_body_bytes=65536
    )
    assert "client_max_body_size 65536;" in text
    assert "proxy_request_buffering on;" in text
    buffer = int(text.split("client_body_buffer_size ")[1].split(";")[0])
    assert buffer > 65536
    assert "@@" not in text


def test_compose_nginx_config_is_the_rendered_one() -> None:
    rendered = render_nginx_config(
        listen="0.0.0.0:8080",
        upstream="service:8000",
        run_dir=Path("/tmp"),
        max_body_bytes=65536,
        resolver="127.0.0.11",
    )
    assert (REPO_ROOT / "deploy" / "nginx.compose.conf").read_text() == rendered, (
        "regenerate: PROVISIONER_BIND=0.0.0.0:8080 python -m service.production --render service:8000 "
        "--resolver 127.0.0.11 > deploy/nginx.compose.conf"
    )
