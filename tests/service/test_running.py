"""The service as it is run: gunicorn with a graceful SIGTERM, local mode, and what it logs."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from served import API_KEY, emulator_env, free_port, start_gunicorn, stop, wait_ready

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator, Fault


def local_mode(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    """`python -m service` in local mode (its own emulator, data in tmp_path/emu), stderr piped."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("PROVISIONER_", "AWS_"))
    }
    environment.update(PROVISIONER_EMULATOR_DATA_DIR=str(tmp_path / "emu"), **env)
    return subprocess.Popen(
        [sys.executable, "-m", "service"],
        env=environment,
        text=True,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )


def stop_for_stderr(process: subprocess.Popen[str]) -> str:
    """Stopped as served.stop stops it; everything it wrote to stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return stderr


def test_gunicorn_sigterm_finishes_in_flight_requests_then_disconnects(
    emulator: Emulator, tmp_path: Path
) -> None:
    port = free_port()
    env = emulator_env(emulator, PROVISIONER_BIND=f"127.0.0.1:{port}", PROVISIONER_WORKERS="1")
    process = start_gunicorn(env, tmp_path / "gunicorn.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        emulator.set_fault("register_thing", Fault(latency=(1.5, 1.5), count=1))
        result: dict[str, requests.Response] = {}
        caller = threading.Thread(
            target=lambda: result.update(
                response=requests.post(
                    base + "/provision",
                    json={"templateName": "demo", "parameters": {"SerialNumber": "GRACE"}},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                    timeout=30,
                )
            )
        )
        caller.start()
        time.sleep(0.5)  # the request is now waiting on RegisterThing
        process.send_signal(signal.SIGTERM)
        caller.join(30)
        assert result["response"].status_code == 201
        assert result["response"].json()["thingName"] == "demo-GRACE"
        assert process.wait(30) == 0
        deadline = time.monotonic() + 5
        while emulator.connected_client_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert emulator.connected_client_ids() == []
    finally:
        stop(process)


def test_python_m_service_runs_local_mode_end_to_end(tmp_path: Path) -> None:
    port = free_port()
    process = local_mode(tmp_path, PROVISIONER_BIND=f"127.0.0.1:{port}", PROVISIONER_WORKERS="2")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        key = (tmp_path / "emu" / "api-key").read_text().strip()
        response = requests.post(
            base + "/provision",
            json={"templateName": "demo", "parameters": {"SerialNumber": "LOCAL-1"}},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        assert response.json()["thingName"] == "demo-LOCAL-1"
        assert response.json()["privateKey"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    finally:
        stderr = stop_for_stderr(process)
    assert "curl -s -X POST" in stderr and key in stderr  # the quick start's printout
    assert response.json()["privateKey"] not in stderr
    listed = subprocess.run(
        [sys.executable, "-m", "emulator", "list", "things", "--data-dir", str(tmp_path / "emu")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "demo-LOCAL-1" in listed.stdout


@pytest.mark.parametrize("with_csr", [False, True])
def test_logs_hold_no_key_token_or_api_key(
    emulator: Emulator, serve, make_settings, caplog: pytest.LogCaptureFixture, device_csr, with_csr: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(
        PROVISIONER_IOT_ENDPOINT=emulator.urls["wss"],
        PROVISIONER_AUTH_MODE="sigv4",
        PROVISIONER_AWS_REGION="us-east-1",
        PROVISIONER_CA_FILE=str(emulator.ca_path),
        PROVISIONER_POOL_SIZE="1",
    ).replace(static_credentials=(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY))
    api = serve(settings)
    body = {"templateName": "demo", "parameters": {"SerialNumber": "LOG-1"}}
    if with_csr:
        body["csr"] = device_csr[1]
    response = api.post("/provision", json=body)
    assert response.status_code == 201, response.text
    bad = api.post("/provision", json=body, key="wrong-key-0123456789abcdef")
    assert bad.status_code == 401
    logged = caplog.text
    assert "PRIVATE KEY" not in logged
    assert api.key not in logged and "wrong-key-0123456789abcdef" not in logged
    assert DEFAULT_SECRET_ACCESS_KEY not in logged
    assert "X-Amz-Signature" not in logged


def test_local_mode_banner_never_prints_a_configured_api_key(tmp_path: Path) -> None:
    port = free_port()
    configured = "configured-key-0123456789abcdef"
    process = local_mode(
        tmp_path,
        PROVISIONER_BIND=f"127.0.0.1:{port}",
        PROVISIONER_WORKERS="1",
        PROVISIONER_API_KEYS=configured,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
    finally:
        stderr = stop_for_stderr(process)
    assert "curl -s -X POST" in stderr
    assert configured not in stderr
    assert "Authorization: Bearer <your key>" in stderr
    assert not (tmp_path / "emu" / "api-key").exists()
