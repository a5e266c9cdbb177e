"""The lifecycle from the operator's CLI (`python -m service ...` as a subprocess, as an operator
runs it) on the store of a running service and the emulator's control plane: revoke-to-disconnect,
the confirmation question, the device view, decommission, the orphan report and sweep, and
reconcile both ways as a table, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from device_keys import make_csr
from iot_control import connect_refused, iot_client, register_over_mqtt
from issued_devices import provision_through
from operator_cli import run

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator, Fault

WITHIN = 2.0


def operator(api: Any, emulator: Emulator, tmp_path: Path, *args: str, stdin: str | None = None) -> Any:
    """`python -m service ARGS` on the service's own store, its control plane the emulator's, AWS
    credentials from the environment only (the emulator's test pair)."""
    return run(
        api.settings.store_url,
        *args,
        stdin=stdin,
        PROVISIONER_AWS_REGION="us-east-1",
        PROVISIONER_CONTROL_ENDPOINT=emulator.urls["control-tls"],
        PROVISIONER_CONTROL_CA_FILE=str(emulator.ca_path),
        AWS_ACCESS_KEY_ID=DEFAULT_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=DEFAULT_SECRET_ACCESS_KEY,
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )


def test_revoke_from_the_cli_disconnects_the_device_within_2_s_and_it_cannot_reconnect(
    lifecycle_api: Any, emulator: Emulator, tmp_path: Path
) -> None:
    device = provision_through(lifecycle_api.post, tmp_path, "SN-CLI-REVOKE")
    connected = device.client(emulator).connect()
    try:
        started = time.monotonic()
        done = operator(
            lifecycle_api, emulator, tmp_path, "certificates", "revoke", device.certificate_id, "--yes"
        )
        returned = time.monotonic()
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == (
            f"certificate {device.certificate_id}: ACTIVE -> REVOKED (attached to {device.thing_name})"
        )
        assert connected.disconnected.wait(5), "still connected 5 s after the CLI revoked"
        gone = time.monotonic()
        assert gone - returned < WITHIN, f"disconnected {gone - returned:.2f} s after the CLI returned"
        print(
            f"CLI revoke: the command ran {returned - started:.2f} s; "
            f"disconnected {gone - returned:.2f} s after it returned"
        )
    finally:
        connected.close()
    assert connect_refused(device.client(emulator)) == "closed by the server before CONNACK"
    events = lifecycle_api.get(f"/admin/devices/{device.thing_name}").json()["events"]
    assert [(e["action"], e["actor"].startswith("cli:")) for e in events] == [("revoke", True)]


def test_the_cli_asks_before_a_destructive_action(
    lifecycle_api: Any, emulator: Emulator, tmp_path: Path
) -> None:
    device = provision_through(lifecycle_api.post, tmp_path, "SN-CLI-ASK")
    said_no = operator(
        lifecycle_api, emulator, tmp_path, "certificates", "revoke", device.certificate_id, stdin="n\n"
    )
    assert said_no.returncode == 1 and "Revoke" in said_no.stderr and "Aborted" in said_no.stderr
    kept = operator(
        lifecycle_api, emulator, tmp_path, "devices", "decommission", device.thing_name, stdin="\n"
    )
    assert kept.returncode == 1
    assert emulator.registry.certificate_status(device.certificate_id) == "ACTIVE"
    assert emulator.registry.describe_thing(device.thing_name) is not None


def test_devices_show_and_decommission_from_the_cli(
    lifecycle_api: Any, emulator: Emulator, tmp_path: Path
) -> None:
    assert (
        lifecycle_api.post("/admin/enrollments", json={"template": "demo", "value": "SN-CLI-DEV"}).status_code
        == 201
    )
    device = provision_through(lifecycle_api.post, tmp_path, "SN-CLI-DEV")
    shown = operator(lifecycle_api, emulator, tmp_path, "devices", "show", device.thing_name)
    assert shown.returncode == 0, shown.stderr
    assert device.certificate_id in shown.stdout and "ACTIVE" in shown.stdout
    assert "demo SerialNumber=SN-CLI-DEV once, enabled, provisions 1" in shown.stdout
    assert "provisioned" in shown.stdout
    as_json = json.loads(
        operator(
            lifecycle_api, emulator, tmp_path, "devices", "show", device.thing_name, "--format", "json"
        ).stdout
    )
    assert as_json["certificates"][0]["status"] == "ACTIVE"
    listed = operator(lifecycle_api, emulator, tmp_path, "devices", "list")
    assert device.thing_name in listed.stdout

    done = operator(lifecycle_api, emulator, tmp_path, "devices", "decommission", device.thing_name, "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"certificate {device.certificate_id}: deleted",
        f"thing {device.thing_name}: deleted",
        "enrollment: may provision again (1 entry reopened)",
    ]
    assert emulator.registry.describe_thing(device.thing_name) is None
    again = provision_through(lifecycle_api.post, tmp_path / "again", "SN-CLI-DEV")
    assert again.thing_name == device.thing_name
    missing = operator(lifecycle_api, emulator, tmp_path, "devices", "show", "demo-NOPE")
    assert missing.returncode == 1 and "no thing named 'demo-NOPE'" in missing.stderr


def test_the_orphan_report_and_sweep_from_the_cli(
    lifecycle_api: Any, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.set_fault(
        "register_thing", Fault(reject=(400, "InvalidParameterException", "refused by a test"))
    )
    _, csr = make_csr("SN-CLI-ORPHAN")
    refused = lifecycle_api.post(
        "/provision",
        json={"templateName": "demo", "parameters": {"SerialNumber": "SN-CLI-ORPHAN"}, "csr": csr},
    )
    emulator.faults.clear()
    assert refused.status_code == 400
    report = operator(lifecycle_api, emulator, tmp_path, "orphans", "--format", "csv")
    [row] = list(csv.DictReader(io.StringIO(report.stdout)))
    assert (row["kind"], row["reason"], row["state"], row["template"]) == (
        "orphan",
        "register-refused",
        "pending",
        "demo",
    )
    table = operator(lifecycle_api, emulator, tmp_path, "orphans")
    assert row["certificateId"] in table.stdout and "orphan pending: 1" in table.stdout

    swept = operator(lifecycle_api, emulator, tmp_path, "orphans", "sweep")
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.strip() == "retired 1, gone already 0, kept (handed out) 0, failed 0"
    assert emulator.registry.describe_certificate(row["certificateId"]) is None
    done = json.loads(
        operator(
            lifecycle_api, emulator, tmp_path, "orphans", "--state", "retired", "--format", "json"
        ).stdout
    )
    assert [(d["certificateId"], d["state"]) for d in done] == [(row["certificateId"], "retired")]


def test_reconcile_lists_the_differences_both_ways(
    start_service: Any, make_emulator: Any, tmp_path: Path, templates_dir: Path
) -> None:
    # A template that names the thing as asked, for the device made outside the service.
    (templates_dir / "named.json").write_text(json.dumps(NAMED_TEMPLATE))
    emulator = make_emulator(templates_dir=templates_dir)
    api = start_service(
        emulator=emulator,
        PROVISIONER_CONTROL_ENDPOINT=emulator.urls["control-tls"],
        PROVISIONER_CONTROL_CA_FILE=str(emulator.ca_path),
        PROVISIONER_ORPHAN_SWEEP_SECONDS="0",
    )
    deleted = provision_through(api.post, tmp_path, "SN-REC-DELETED")
    revoked = provision_through(api.post, tmp_path, "SN-REC-REVOKED")
    fine = provision_through(api.post, tmp_path, "SN-REC-FINE")
    iot = iot_client(emulator)
    arn = f"arn:aws:iot:us-east-1:000000000000:cert/{deleted.certificate_id}"
    # Outside the service: a certificate deleted, another revoked, and a device made with the claim.
    iot.detach_thing_principal(thingName=deleted.thing_name, principal=arn)
    iot.update_certificate(certificateId=deleted.certificate_id, newStatus="INACTIVE")
    iot.delete_certificate(certificateId=deleted.certificate_id, forceDelete=True)
    iot.update_certificate(certificateId=revoked.certificate_id, newStatus="REVOKED")
    outsider = _provision_outside(emulator, "-outsider")

    result = json.loads(operator(api, emulator, tmp_path, "reconcile", "--format", "json").stdout)
    found = {(d["kind"], d["certificateId"]) for d in result["differences"]}
    assert found == {
        ("missing-in-aws", deleted.certificate_id),
        ("status-differs", revoked.certificate_id),
        ("unknown-to-audit", outsider),
    }
    assert fine.certificate_id not in {d["certificateId"] for d in result["differences"]}
    status = next(d for d in result["differences"] if d["kind"] == "status-differs")
    assert (status["awsStatus"], status["expectedStatus"]) == ("REVOKED", "ACTIVE")
    unknown = next(d for d in result["differences"] if d["kind"] == "unknown-to-audit")
    assert unknown["thingName"] == "-outsider" and unknown["awsStatus"] == "ACTIVE"

    as_csv = operator(api, emulator, tmp_path, "reconcile", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert [r["kind"] for r in rows] == ["missing-in-aws", "status-differs", "unknown-to-audit"]
    # A cell a spreadsheet would run as a formula starts with an apostrophe.
    assert rows[2]["thingName"] == "'-outsider"
    table = operator(api, emulator, tmp_path, "reconcile").stdout
    assert "3 difference(s)" in table and "missing-in-aws" in table

    # The API says the same; a revoke made here is no difference.
    assert len(api.get("/admin/reconcile").json()["differences"]) == 3
    assert api.post(f"/admin/certificates/{fine.certificate_id}/revoke").status_code == 200
    assert len(api.get("/admin/reconcile").json()["differences"]) == 3


NAMED_TEMPLATE = {
    "Parameters": {"ThingName": {"Type": "String"}},
    "Resources": {
        "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Ref": "ThingName"}}},
        "certificate": {
            "Type": "AWS::IoT::Certificate",
            "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"},
        },
    },
}


def _provision_outside(emulator: Emulator, thing_name: str) -> str:
    """A device provisioned with the claim but not through the service, its thing named as asked
    (`-outsider`: a name a spreadsheet would take for a formula)."""
    _, csr = make_csr("outsider")
    return str(register_over_mqtt(emulator, csr, "named", {"ThingName": thing_name})["certificateId"])
