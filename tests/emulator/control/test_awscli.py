"""The AWS CLI (`awscli` from PyPI, with the botocore it carries) against the emulator's control
plane, run as an operator runs it: `aws iot ... --endpoint-url`, credentials from AWS_* variables,
the emulator's CA through AWS_CA_BUNDLE (or `--no-verify-ssl`)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from iot_control import aws_cli, connect_refused, provision_device

from emulator import Emulator


def update_certificate(
    emulator: Emulator, tmp_path: Path, certificate_id: str, status: str
) -> subprocess.CompletedProcess[str]:
    """`aws iot update-certificate --certificate-id ID --new-status STATUS`."""
    return aws_cli(
        emulator, tmp_path, "update-certificate", "--certificate-id", certificate_id, "--new-status", status
    )


def test_an_operator_lists_and_describes_with_the_cli(emulator: Emulator, tmp_path: Path) -> None:
    devices = [provision_device(emulator, tmp_path, f"CLI-{n}") for n in range(3)]

    things = aws_cli(emulator, tmp_path, "list-things", "--page-size", "1")  # the CLI pages through
    assert things.returncode == 0, things.stderr
    assert [t["thingName"] for t in json.loads(things.stdout)["things"]] == [d.thing_name for d in devices]

    described = aws_cli(
        emulator, tmp_path, "describe-certificate", "--certificate-id", devices[0].certificate_id
    )
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["certificateDescription"]["status"] == "ACTIVE"

    # ListCertificates has no status filter in AWS's API: the CLI's --query filters the pages.
    active = aws_cli(
        emulator,
        tmp_path,
        "list-certificates",
        "--query",
        "certificates[?status=='ACTIVE'].certificateId",
        "--no-verify-ssl",
        ca_bundle=False,
    )
    assert active.returncode == 0, active.stderr
    assert set(json.loads(active.stdout)) == {d.certificate_id for d in devices} | {
        emulator.authority.claim_certificate_id
    }


def test_a_revoke_from_the_cli_disconnects_the_device_within_2_s(emulator: Emulator, tmp_path: Path) -> None:
    device = provision_device(emulator, tmp_path, "CLI-REVOKE")
    connected = device.client(emulator).connect()
    try:
        revoked = update_certificate(emulator, tmp_path, device.certificate_id, "REVOKED")
        answered_at = time.monotonic()
        assert revoked.returncode == 0, revoked.stderr
        assert connected.disconnected.wait(5), "still connected 5 s after the revoke"
        elapsed = time.monotonic() - answered_at
        assert elapsed < 2.0, f"disconnected {elapsed:.2f} s after the CLI returned"
        assert connect_refused(device.client(emulator))
    finally:
        connected.close()

    again = update_certificate(emulator, tmp_path, device.certificate_id, "ACTIVE")
    assert again.returncode != 0
    assert "(CertificateStateException) when calling the UpdateCertificate operation" in again.stderr
