"""`python -m emulator`: the ready line, a working listener, a clean Ctrl-C, and `list`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from mqtt_support import MqttTestClient


def serve_command(data_dir: Path, *options: str) -> list[str]:
    """`python -m emulator` on `data_dir` with its plain MQTT listener on a free port, and `options`."""
    return [sys.executable, "-m", "emulator", "--data-dir", str(data_dir), "--mqtt-port", "0", *options]


def test_cli_prints_a_ready_line_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        serve_command(
            tmp_path,
            "--mqtts-port",
            "0",
            "--ws-port",
            "off",
            "--wss-port",
            "0",
            "--control-tls-port",
            "off",
            "--key-algorithm",
            "ec",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(process.stdout.readline())
        # The control plane listens on a free port unless told otherwise.
        assert set(ready["listeners"]) == {"mqtt", "mqtts", "wss", "control"}
        assert ready["listeners"]["wss"].endswith("/mqtt")
        assert ready["listeners"]["control"].startswith("http://127.0.0.1:")
        assert Path(ready["caFile"]).exists() and Path(ready["claimCertificate"]).exists()
        client = MqttTestClient(ready["listeners"]["mqtt"]).connect()
        try:
            outcome, _ = client.request("$aws/certificates/create/json", {})
            assert outcome == "accepted"
        finally:
            client.close()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0
        assert "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    listed = subprocess.run(
        [sys.executable, "-m", "emulator", "list", "certificates", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    statuses = sorted(c["status"] for c in json.loads(listed.stdout))
    assert statuses == ["ACTIVE", "PENDING_ACTIVATION"]  # the claim cert and the new one
    pending = subprocess.run(
        [sys.executable, "-m", "emulator", "list", "certificates", "--status", "PENDING_ACTIVATION"]
        + ["--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert [c["status"] for c in json.loads(pending.stdout)] == ["PENDING_ACTIVATION"]


def test_cli_reports_a_bad_fault_spec_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        serve_command(tmp_path, "--fault", "register_thing:explode"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "unknown action 'explode'" in result.stderr and "Traceback" not in result.stderr
