"""The production shape (`python -m service.serving.production`): nginx in front of gunicorn keeps slow
clients away from gunicorn's threads. Needs Debian's nginx: skipped without it, except in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from repository import REPO_ROOT
from scraped import Scrape
from served import API_KEY, emulator_env, free_port, stop, wait_ready

from bench.slow_clients import SlowClients, measure
from emulator import Emulator
from service.serving.nginx import render_nginx_config

HAVE_NGINX = shutil.which("nginx") is not None or os.access("/usr/sbin/nginx", os.X_OK)
needs_nginx = pytest.mark.skipif(
    not HAVE_NGINX and os.environ.get("CI") != "true", reason="nginx is not installed (apt-get install nginx)"
)


@pytest.fixture
def start_production(emulator: Emulator, tmp_path: Path) -> Iterator[Callable[..., tuple[str, Path]]]:
    """start_production(**env) -> (base URL, run dir): `python -m service.serving.production` on the
    emulator, one worker, PROVISIONER_* from `env`; stopped (and checked to stop) at teardown."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(**env: str) -> tuple[str, Path]:
        port = free_port()
        env = emulator_env(emulator, PROVISIONER_BIND=f"127.0.0.1:{port}", PROVISIONER_WORKERS="1", **env)
        run_dir = tmp_path / f"run-{len(started)}"
        with open(tmp_path / "production.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "service.serving.production", "--run-dir", str(run_dir)],
                env=env,
                stdout=log,
                stderr=log,
            )
        started.append((process, run_dir))
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, process)
        return base, run_dir

    yield start
    for process, run_dir in started:
        assert stop(process) == 0, (tmp_path / "production.log").read_text()[-3000:]
        assert not (run_dir / "nginx.pid").exists()  # nginx stopped too


@pytest.fixture
def production(start_production: Callable[..., tuple[str, Path]]) -> tuple[str, Path]:
    return start_production()


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
        "regenerate: PROVISIONER_BIND=0.0.0.0:8080 python -m service.serving.production "
        "--render service:8000 --resolver 127.0.0.11 > deploy/nginx.compose.conf"
    )


FLOOD = 300  # requests without a key, one after another from one address


def admin_headers(**extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}", **extra}


@needs_nginx
def test_the_audit_trail_records_the_callers_address_behind_nginx_never_one_it_sent(
    start_production: Callable[..., tuple[str, Path]], tmp_path: Path
) -> None:
    base, _ = start_production(PROVISIONER_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}")
    body = {"templateName": "demo", "parameters": {"SerialNumber": "SN-XFF-1"}}
    sent = requests.post(
        base + "/provision",
        json=body,
        headers=admin_headers(**{"X-Forwarded-For": "6.6.6.6, 7.7.7.7", "X-Real-IP": "8.8.8.8"}),
        timeout=30,
    )
    assert sent.status_code == 201, sent.text
    [record] = requests.get(base + "/admin/registrations", headers=admin_headers(), timeout=10).json()[
        "items"
    ]
    assert record["callerAddress"] == "127.0.0.1"  # nginx's peer: the unix socket gave ""


@needs_nginx
def test_an_enrollment_csv_past_the_body_limit_has_the_import_routes_own_limit_at_nginx(
    start_production: Callable[..., tuple[str, Path]], tmp_path: Path
) -> None:
    base, _ = start_production(PROVISIONER_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}")
    headers = admin_headers(**{"Content-Type": "text/csv"})
    csv_text = "SerialNumber\n" + "".join(f"SN-{n:09d}\n" for n in range(20_000))  # ~280 KB
    assert len(csv_text) > 65536
    imported = requests.post(
        base + "/admin/enrollments/import?template=demo", data=csv_text, headers=headers, timeout=60
    )
    assert imported.status_code == 200, imported.text
    assert imported.json() == {"added": 20_000, "updated": 0}
    huge = requests.post(
        base + "/admin/enrollments/import?template=demo",
        data=b"x" * (4 * 1024 * 1024 + 1),
        headers=headers,
        timeout=60,
    )
    assert huge.status_code == 413 and huge.headers["Content-Type"] == "application/problem+json"
    assert "4194304 bytes" in huge.json()["detail"]
    other = requests.post(
        base + "/admin/enrollments", data=b"x" * 70_000, headers=admin_headers(), timeout=10
    )
    assert other.status_code == 413 and "65536 bytes" in other.json()["detail"]


@needs_nginx
def test_a_flood_without_a_key_is_cut_at_nginx_and_counted_not_written_to_the_store(
    start_production: Callable[..., tuple[str, Path]], tmp_path: Path
) -> None:
    base, _ = start_production(
        PROVISIONER_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}",
        PROVISIONER_PROXY_RATE_PER_ADDRESS="20",
        PROVISIONER_PROXY_METRICS="true",
    )
    statuses: list[int] = []
    started = time.monotonic()
    with requests.Session() as flood:
        for number in range(FLOOD):
            response = flood.post(base + "/provision", json={"templateName": "demo"}, timeout=10)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["Content-Type"] == "application/problem+json"
                assert response.headers["Retry-After"] == "1"
                assert response.json()["status"] == 429
            if number % 30 == 0:
                assert flood.get(base + "/healthz", timeout=10).status_code == 200  # never limited
    elapsed = time.monotonic() - started
    counts = Counter(statuses)
    assert set(counts) <= {401, 429}, counts
    # A burst of 40, then 20 a second: nginx let through no more than that, and refused the rest.
    allowed = 40 + 20 * elapsed + 1
    assert counts[401] <= allowed, (counts, elapsed)
    assert counts[429] >= FLOOD - allowed, (counts, elapsed)

    time.sleep(2.5)  # the address's bucket empties
    metrics = requests.get(base + "/metrics", headers=admin_headers(), timeout=10)
    assert metrics.status_code == 200, metrics.text
    assert Scrape(metrics.text).value("provisioner_unauthenticated_provisions_total") == counts[401]
    trail = requests.get(base + "/admin/registrations", headers=admin_headers(), timeout=10).json()
    assert trail["items"] == [], "a request without a key wrote an audit row"


@needs_nginx
def test_metrics_are_not_served_through_nginx_unless_configured(production: tuple[str, Path]) -> None:
    base, _ = production
    for headers in ({}, admin_headers()):
        response = requests.get(base + "/metrics", headers=headers, timeout=10)
        assert response.status_code == 404, response.text
        assert response.headers["Content-Type"] == "application/problem+json"
        assert "PROVISIONER_PROXY_METRICS" in response.json()["detail"]
