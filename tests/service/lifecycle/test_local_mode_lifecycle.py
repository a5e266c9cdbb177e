"""The lifecycle in local mode as `make run` starts it (`python -m service`: gunicorn, 2 workers, the
emulator started beside it): the workers reach the emulator's control plane with its test pair,
and the operator's commands (no endpoint set) find the running emulator's; the control-plane
settings are checked as the others are."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from device_keys import make_csr
from served import free_port, stop, wait_ready

from service.config import Settings, SettingsError


def test_local_mode_workers_and_commands_use_the_emulators_control_plane(tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PROVISIONER_", "AWS_"))}
    env.update(
        PROVISIONER_BIND=f"127.0.0.1:{port}",
        PROVISIONER_WORKERS="2",
        PROVISIONER_EMULATOR_DATA_DIR=str(tmp_path / "emu"),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "service"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        headers = {"Authorization": f"Bearer {(tmp_path / 'emu' / 'api-key').read_text().strip()}"}
        _, csr = make_csr("LOCAL-LC")
        body = {"templateName": "demo", "parameters": {"SerialNumber": "LOCAL-LC"}, "csr": csr}
        issued = requests.post(base + "/provision", json=body, headers=headers, timeout=30).json()
        status = requests.get(base + "/admin/lifecycle", headers=headers, timeout=30).json()
        assert status["controlPlane"]["available"] is True
        assert status["controlPlane"]["endpoint"].startswith("https://127.0.0.1:")
        suspended = requests.post(
            f"{base}/admin/certificates/{issued['certificateId']}/suspend", headers=headers, timeout=30
        )
        assert suspended.status_code == 200 and suspended.json()["status"] == "INACTIVE"

        def command(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "service", *args],
                env={k: v for k, v in env.items() if k != "PROVISIONER_BIND"},
                capture_output=True,
                text=True,
                timeout=60,
            )

        shown = command("devices", "show", "demo-LOCAL-LC")
        assert shown.returncode == 0, shown.stderr
        assert issued["certificateId"] in shown.stdout and "INACTIVE" in shown.stdout
        assert "suspend" in shown.stdout
        done = command("devices", "decommission", "demo-LOCAL-LC", "--yes")
        assert done.returncode == 0, done.stderr
        assert (
            requests.get(base + "/admin/devices/demo-LOCAL-LC", headers=headers, timeout=30).status_code
            == 404
        )
    finally:
        stop(process)


@pytest.mark.parametrize(
    "endpoint,problem",
    [
        ("ftp://127.0.0.1:1", "must be an https:// or http:// URL"),
        ("https://user:secret@iot.example", "must not contain user info"),
        ("https://127.0.0.1:99999", "must be an https:// or http:// URL"),
    ],
)
def test_a_control_endpoint_must_be_an_http_url_without_credentials(endpoint: str, problem: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"PROVISIONER_API_KEYS": "k" * 20, "PROVISIONER_CONTROL_ENDPOINT": endpoint})
    assert problem in str(raised.value) and "secret" not in str(raised.value)


def test_the_control_plane_settings_are_read_and_checked(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings.from_env(
        {
            "PROVISIONER_API_KEYS": "k" * 20,
            "PROVISIONER_CONTROL_ENDPOINT": "https://127.0.0.1:9443",
            "PROVISIONER_CONTROL_CA_FILE": str(ca),
            "PROVISIONER_ORPHAN_SWEEP_SECONDS": "0",
            "PROVISIONER_ORPHAN_GRACE_SECONDS": "5",
            "PROVISIONER_ROTATION_GRACE_SECONDS": "3600",
        }
    )
    assert (settings.control_endpoint, settings.control_ca_file) == ("https://127.0.0.1:9443", ca)
    assert (
        settings.orphan_sweep_seconds,
        settings.orphan_grace_seconds,
        settings.rotation_grace_seconds,
    ) == (
        0,
        5,
        3600,
    )
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(
            {
                "PROVISIONER_API_KEYS": "k" * 20,
                "PROVISIONER_CONTROL_CA_FILE": str(tmp_path / "missing.pem"),
                "PROVISIONER_ORPHAN_SWEEP_SECONDS": "-1",
            }
        )
    assert "PROVISIONER_CONTROL_CA_FILE" in str(raised.value)
    assert "PROVISIONER_ORPHAN_SWEEP_SECONDS" in str(raised.value)
