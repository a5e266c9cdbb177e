"""The admin API for what happens after birth, over real HTTP against the emulator's control plane:
the device view, revoke-to-disconnect, suspend and reactivate, decommission (a `once` device
provisions again), rotation with and without a grace period, and what the service says without
AWS credentials. Every answer is checked against openapi.yaml by the client."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from device_keys import make_csr
from iot_control import connect_refused
from issued_devices import provision_through
from mqtt_support import MqttTestClient

from emulator import Emulator

WITHIN = 2.0  # the issue's bound from revoke to disconnect


def test_the_device_view_joins_aws_and_the_audit_trail(lifecycle_api: Any, tmp_path: Path) -> None:
    api = lifecycle_api
    added = api.post("/admin/enrollments", json={"template": "demo", "value": "SN-VIEW"})
    assert added.status_code == 201
    device = provision_through(api.post, tmp_path, "SN-VIEW")

    view = api.get(f"/admin/devices/{device.thing_name}")
    assert view.status_code == 200
    body = view.json()
    assert body["thingName"] == "demo-SN-VIEW"
    assert isinstance(body["attributes"], dict)
    assert [(c["certificateId"], c["status"]) for c in body["certificates"]] == [
        (device.certificate_id, "ACTIVE")
    ]
    assert body["certificates"][0]["certificateArn"].endswith(f"cert/{device.certificate_id}")
    [record] = body["registrations"]
    assert (record["outcome"], record["certificateId"]) == ("provisioned", device.certificate_id)
    assert body["enrollment"]["value"] == "SN-VIEW" and body["enrollment"]["provisions"] == 1
    assert body["events"] == []

    listed = api.get("/admin/devices", params={"limit": 10}).json()
    assert "demo-SN-VIEW" in [t["thingName"] for t in listed["items"]]
    missing = api.get("/admin/devices/demo-NOPE")
    assert missing.status_code == 404 and "demo-NOPE" in missing.json()["detail"]
    assert api.get("/admin/devices/not%20a%20name").status_code == 422


@pytest.mark.parametrize("action,status", [("revoke", "REVOKED"), ("suspend", "INACTIVE")])
def test_a_device_is_disconnected_within_2_s_of_a_revoke_or_suspend_and_cannot_reconnect(
    lifecycle_api: Any, emulator: Emulator, tmp_path: Path, action: str, status: str
) -> None:
    api = lifecycle_api
    device = provision_through(api.post, tmp_path, f"SN-{action.upper()}")
    connected = device.client(emulator).connect()
    try:
        asked_at = time.monotonic()
        answer = api.post(f"/admin/certificates/{device.certificate_id}/{action}")
        answered_at = time.monotonic()
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == status and answer.json()["previousStatus"] == "ACTIVE"
        assert answer.json()["things"] == [device.thing_name]
        assert connected.disconnected.wait(5), f"still connected 5 s after {action}"
        gone_at = time.monotonic()
        assert gone_at - answered_at < WITHIN, f"disconnected {gone_at - answered_at:.2f} s after the answer"
        print(f"{action}: disconnected {gone_at - asked_at:.2f} s after the request was sent")
        assert connect_refused(device.client(emulator)) == "closed by the server before CONNACK"
    finally:
        connected.close()
    events = api.get(f"/admin/devices/{device.thing_name}").json()["events"]
    assert [(e["action"], e["outcome"], e["actor"]) for e in events] == [(action, "done", "bootstrap-1")]


def test_a_suspended_certificate_is_reactivated_and_a_revoked_one_never_is(
    lifecycle_api: Any, emulator: Emulator, tmp_path: Path
) -> None:
    api = lifecycle_api
    device = provision_through(api.post, tmp_path, "SN-SUSPEND")
    base = f"/admin/certificates/{device.certificate_id}"
    assert api.post(f"{base}/suspend").json()["status"] == "INACTIVE"
    assert connect_refused(device.client(emulator))
    assert api.post(f"{base}/reactivate").json()["status"] == "ACTIVE"
    device.client(emulator).connect().close()
    assert api.post(f"{base}/revoke").json()["status"] == "REVOKED"
    refused = api.post(f"{base}/reactivate")
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["errorCode"] == "CertificateStateException" and problem["operation"] == "UpdateCertificate"
    assert api.post(f"/admin/certificates/{'0' * 64}/revoke").status_code == 404
    assert api.post("/admin/certificates/xyz/revoke").status_code == 422


def test_a_decommissioned_once_device_provisions_again(
    lifecycle_api: Any, emulator: Emulator, tmp_path: Path
) -> None:
    api = lifecycle_api
    assert api.post("/admin/enrollments", json={"template": "demo", "value": "SN-RMA"}).status_code == 201
    first = provision_through(api.post, tmp_path / "first", "SN-RMA")
    _, csr = make_csr("SN-RMA")
    again = api.post(
        "/provision", json={"templateName": "demo", "parameters": {"SerialNumber": "SN-RMA"}, "csr": csr}
    )
    assert again.status_code == 409 and again.json()["thingName"] == "demo-SN-RMA"

    done = api.post(f"/admin/devices/{first.thing_name}/decommission")
    assert done.status_code == 200, done.text
    assert done.json() == {
        "thingName": "demo-SN-RMA",
        "thingDeleted": True,
        "certificates": [{"certificateId": first.certificate_id, "status": "ACTIVE", "deleted": True}],
        "enrollmentsReopened": 1,
        "enrollmentsHeld": 0,
    }
    assert emulator.registry.describe_thing("demo-SN-RMA") is None
    assert api.get(f"/admin/devices/{first.thing_name}").status_code == 404
    assert connect_refused(first.client(emulator))

    second = provision_through(api.post, tmp_path / "second", "SN-RMA")
    assert second.thing_name == "demo-SN-RMA" and second.certificate_id != first.certificate_id
    second.client(emulator).connect().close()
    history = api.get(f"/admin/devices/{second.thing_name}").json()
    assert [r["outcome"] for r in history["registrations"]] == ["provisioned", "provisioned"]
    assert [e["action"] for e in history["events"]] == ["decommission"]
    assert history["enrollment"]["provisions"] == 1


def test_rotation_issues_a_certificate_for_the_same_thing_and_retires_the_old_after_the_grace(
    lifecycle_api: Any, emulator: Emulator, tmp_path: Path
) -> None:
    api = lifecycle_api
    old = provision_through(api.post, tmp_path, "SN-ROTATE")
    key_pem, csr = make_csr("SN-ROTATE")
    rotated = api.post(f"/admin/devices/{old.thing_name}/rotate", json={"csr": csr, "graceSeconds": 3600})
    assert rotated.status_code == 201, rotated.text
    body = rotated.json()
    certificate = x509.load_pem_x509_certificate(body["certificatePem"].encode())
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert certificate.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    assert body["policies"] and body["retiredNow"] == []
    assert [r["certificateId"] for r in body["retiring"]] == [old.certificate_id]

    view = api.get(f"/admin/devices/{old.thing_name}").json()
    statuses = {
        c["certificateId"]: (c["status"], (c["retirement"] or {}).get("state")) for c in view["certificates"]
    }
    assert statuses == {old.certificate_id: ("ACTIVE", "pending"), body["certificateId"]: ("ACTIVE", None)}
    new_cert = tmp_path / "new.pem"
    new_cert.write_text(body["certificatePem"])
    key_path = tmp_path / "new.key"
    key_path.write_text(key_pem)
    old.client(emulator).connect().close()  # within the grace both work
    rotated_client = MqttTestClient(
        emulator.urls["mqtts"], ca_file=str(emulator.ca_path), cert=str(new_cert), key=str(key_path)
    )
    rotated_client.connect().close()
    assert api.post("/admin/orphans/sweep").json()["retired"] == []  # not due yet
    assert emulator.registry.describe_certificate(old.certificate_id) is not None


def test_rotation_at_once_disconnects_the_old_certificate(
    lifecycle_api: Any, emulator: Emulator, tmp_path: Path
) -> None:
    api = lifecycle_api
    old = provision_through(api.post, tmp_path, "SN-NOW")
    connected = old.client(emulator).connect()
    try:
        _, csr = make_csr("SN-NOW")
        body = api.post(
            f"/admin/devices/{old.thing_name}/rotate", json={"csr": csr, "graceSeconds": 0}
        ).json()
        assert body["retiredNow"] == [old.certificate_id]
        assert connected.disconnected.wait(WITHIN + 1)
    finally:
        connected.close()
    assert emulator.registry.describe_certificate(old.certificate_id) is None
    thing = emulator.registry.describe_thing(old.thing_name)
    assert thing is not None and thing["principals"] == [body["certificateId"]]
    orphans = api.get("/admin/orphans", params={"kind": "retirement"}).json()["items"]
    assert [(o["certificateId"], o["reason"], o["state"]) for o in orphans] == [
        (old.certificate_id, "rotated", "retired")
    ]
    refused = api.post(f"/admin/devices/{old.thing_name}/rotate", json={"csr": "not a csr"})
    assert refused.status_code == 422 and "csr" in refused.json()["errors"]


def test_without_aws_credentials_the_lifecycle_says_so_and_provisioning_works(
    serve: Any, make_settings: Any, emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # botocore's chain finds nothing: no variables, no files, no instance metadata.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # MQTT with the claim certificate: provisioning needs no AWS credentials.
    api = serve(
        make_settings(
            PROVISIONER_IOT_ENDPOINT=emulator.urls["mqtts"],
            PROVISIONER_AUTH_MODE="certificate",
            PROVISIONER_CLAIM_CERT=str(emulator.claim_cert_path),
            PROVISIONER_CLAIM_KEY=str(emulator.claim_key_path),
            PROVISIONER_CA_FILE=str(emulator.ca_path),
            PROVISIONER_AWS_REGION="us-east-1",
            PROVISIONER_POOL_SIZE="2",
            PROVISIONER_CONTROL_ENDPOINT=emulator.urls["control"],
        )
    )
    api.wait_ready()
    status = api.get("/admin/lifecycle").json()
    assert status["controlPlane"]["available"] is False
    assert "no AWS credentials" in status["controlPlane"]["problem"]
    refused = api.get("/admin/devices/demo-SN-1")
    assert refused.status_code == 503 and refused.json()["type"].endswith("/control-plane-unavailable")
    assert "iot:UpdateCertificate" in refused.json()["detail"]
    assert api.post("/admin/orphans/sweep").status_code == 503
    assert provision_through(api.post, tmp_path, "SN-NOCREDS").thing_name == "demo-SN-NOCREDS"
