"""No orphans: a certificate the service got from AWS IoT and did not hand out is recorded (by id,
with why) and swept through the control plane; after a mix of faults the emulator holds no ACTIVE
certificate that no caller got. Real faults of the real emulator, real HTTP, a real store."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from device_keys import make_csr
from issued_devices import provision_through
from scraped import delta, scrape

from emulator import Emulator, Fault
from service.store import Store
from service.store.lifecycle import LifecycleQueries, Retirement

SHORT = {
    "PROVISIONER_STEP_TIMEOUT_SECONDS": "1",
    "PROVISIONER_REQUEST_TIMEOUT_SECONDS": "2",
    "PROVISIONER_POOL_WAIT_SECONDS": "1",
}


def post_csr(api: Any, serial: str) -> Any:
    _, csr = make_csr(serial)
    return api.post(
        "/provision", json={"templateName": "demo", "parameters": {"SerialNumber": serial}, "csr": csr}
    )


def test_a_lost_register_answer_leaves_an_orphan_that_the_sweep_deletes(
    start_service: Any, lifecycle_env: dict[str, str], emulator: Emulator
) -> None:
    api = start_service(**lifecycle_env, **SHORT)
    before = scrape(api.get)
    emulator.set_fault("register_thing", Fault(never_answer=True))
    answer = post_csr(api, "SN-LOST")
    emulator.faults.clear()
    assert answer.status_code == 504, answer.text
    # AWS registered the thing and activated the certificate; nobody got it.
    thing = emulator.registry.describe_thing("demo-SN-LOST")
    assert thing is not None
    [orphan_id] = thing["principals"]
    assert emulator.registry.certificate_status(orphan_id) == "ACTIVE"

    [orphan] = api.get("/admin/orphans").json()["items"]
    assert (orphan["certificateId"], orphan["kind"], orphan["reason"], orphan["state"]) == (
        orphan_id,
        "orphan",
        "register-lost",
        "pending",
    )
    assert orphan["requestId"] == answer.json()["requestId"] and orphan["template"] == "demo"

    swept = api.post("/admin/orphans/sweep").json()
    assert swept == {"retired": [orphan_id], "gone": [], "kept": [], "failed": [], "unavailable": None}
    assert emulator.registry.describe_certificate(orphan_id) is None
    assert emulator.registry.describe_thing("demo-SN-LOST")["principals"] == []
    after = scrape(api.get)
    assert delta(before, after, "provisioner_orphans_recorded_total", reason="register-lost") == 1
    assert (
        delta(before, after, "provisioner_certificate_retirements_total", kind="orphan", result="retired")
        == 1
    )
    [done] = api.get("/admin/orphans", params={"state": "retired"}).json()["items"]
    assert done["certificateId"] == orphan_id and done["doneAt"] is not None

    # The caller's retry provisions the same thing with a new certificate, the only one on it.
    retried = post_csr(api, "SN-LOST")
    assert retried.status_code == 201
    assert emulator.registry.describe_thing("demo-SN-LOST")["principals"] == [retried.json()["certificateId"]]


def test_a_refused_register_leaves_a_pending_certificate_that_the_sweep_deletes(
    start_service: Any, lifecycle_env: dict[str, str], emulator: Emulator
) -> None:
    api = start_service(**lifecycle_env)
    emulator.set_fault(
        "register_thing", Fault(reject=(400, "InvalidParameterException", "refused by a test"))
    )
    answer = post_csr(api, "SN-REFUSED")
    emulator.faults.clear()
    assert answer.status_code == 400 and answer.json()["errorCode"] == "InvalidParameterException"
    [orphan] = api.get("/admin/orphans", params={"state": "pending"}).json()["items"]
    assert orphan["reason"] == "register-refused"
    assert emulator.registry.certificate_status(orphan["certificateId"]) == "PENDING_ACTIVATION"
    assert api.post("/admin/orphans/sweep").json()["retired"] == [orphan["certificateId"]]
    assert emulator.registry.describe_certificate(orphan["certificateId"]) is None


def test_the_workers_sweep_by_themselves(
    start_service: Any, lifecycle_env: dict[str, str], emulator: Emulator
) -> None:
    api = start_service(**{**lifecycle_env, "PROVISIONER_ORPHAN_SWEEP_SECONDS": "0.2"})
    emulator.set_fault(
        "register_thing", Fault(reject=(400, "InvalidParameterException", "refused by a test"))
    )
    assert post_csr(api, "SN-BACKGROUND").status_code == 400
    emulator.faults.clear()
    deadline = time.monotonic() + 10
    while not (retired := api.get("/admin/orphans", params={"state": "retired"}).json()["items"]):
        assert time.monotonic() < deadline, "the background sweep did not retire the orphan"
        time.sleep(0.1)
    assert emulator.registry.describe_certificate(retired[0]["certificateId"]) is None


def test_an_orphan_the_audit_trail_shows_handed_out_is_never_touched(
    lifecycle_api: Any, emulator: Emulator, tmp_path: Path
) -> None:
    api = lifecycle_api
    device = provision_through(api.post, tmp_path, "SN-KEPT")
    store: Store = api.app.extensions["store"].get()
    records = LifecycleQueries(store.engine)
    now = datetime.now(UTC)
    records.schedule(
        [Retirement(device.certificate_id, "orphan", "caller-gone", now - timedelta(seconds=1), now)]
    )
    assert api.post("/admin/orphans/sweep").json()["kept"] == [device.certificate_id]
    assert emulator.registry.certificate_status(device.certificate_id) == "ACTIVE"
    device.client(emulator).connect().close()


def test_after_a_fault_mix_aws_holds_no_active_certificate_that_no_caller_got(
    start_service: Any, lifecycle_env: dict[str, str], emulator: Emulator
) -> None:
    """Register answers lost, late, dropped with the connection, repeated, handled twice; Create*
    handled twice (a second certificate nobody asked for). Every caller's 201 is kept; then a sweep."""
    api = start_service(**lifecycle_env, **SHORT, PROVISIONER_POOL_SIZE="4")
    for fault in (
        Fault(never_answer=True, chance=0.15),
        Fault(late=1.5, chance=0.1),
        Fault(drop_connection=True, chance=0.1),
        Fault(answer_twice=(0.0, 0.05), chance=0.1),
        Fault(process_twice=(0.0, 0.05), chance=0.1),
    ):
        emulator.add_fault("register_thing", fault)
    emulator.add_fault("create_certificate_from_csr", Fault(process_twice=(0.0, 0.05), chance=0.1))
    handed_out: set[str] = set()
    statuses: list[int] = []
    lock = threading.Lock()
    serials = iter(range(60))

    def caller() -> None:
        while True:
            with lock:
                n = next(serials, None)
            if n is None:
                return
            answer = post_csr(api, f"SN-MIX-{n:03d}")
            with lock:
                statuses.append(answer.status_code)
                if answer.status_code == 201:
                    handed_out.add(answer.json()["certificateId"])

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    emulator.faults.clear()
    time.sleep(2.0)  # the late answers' registrations are done by now

    def active_nobody_got() -> set[str]:
        active = {
            c["certificateId"] for c in emulator.registry.list_certificates() if c["status"] == "ACTIVE"
        }
        return active - handed_out - {_claim_id(emulator)}

    stray = active_nobody_got()
    failures = len([s for s in statuses if s != 201])
    assert failures > 0 and stray, f"the mix should have lost some answers: {statuses}"
    report = api.post("/admin/orphans/sweep").json()
    assert report["failed"] == [] and report["kept"] == []
    assert active_nobody_got() == set(), "ACTIVE certificates no caller got are left in AWS"
    for certificate_id in handed_out:
        assert emulator.registry.certificate_status(certificate_id) == "ACTIVE"
    print(
        f"fault mix: {len(statuses)} calls, {failures} failed, {len(stray)} ACTIVE certificates nobody got "
        f"before the sweep, {len(report['retired'])} retired, 0 left"
    )


def _claim_id(emulator: Emulator) -> str:
    certificate = x509.load_pem_x509_certificate(emulator.claim_cert_path.read_bytes())
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


@pytest.mark.parametrize("swept_first", [False, True])
def test_a_once_device_whose_answer_was_lost_provisions_again_once_decommissioned(
    start_service: Any, lifecycle_env: dict[str, str], emulator: Emulator, swept_first: bool
) -> None:
    api = start_service(**lifecycle_env, **SHORT)
    assert (
        api.post("/admin/enrollments", json={"template": "demo", "value": "SN-LOST-RMA"}).status_code == 201
    )
    emulator.set_fault("register_thing", Fault(never_answer=True))
    assert post_csr(api, "SN-LOST-RMA").status_code == 504
    emulator.faults.clear()
    # The entry counted the provision without a thing: the device may exist, so once refuses.
    refused = post_csr(api, "SN-LOST-RMA")
    assert refused.status_code == 409, refused.text
    if swept_first:  # the orphan is gone from the thing: the sweep's record still names the request
        assert len(api.post("/admin/orphans/sweep").json()["retired"]) == 1
    done = api.post("/admin/devices/demo-SN-LOST-RMA/decommission").json()
    assert done["enrollmentsReopened"] == 1
    assert [c["deleted"] for c in done["certificates"]] == ([] if swept_first else [True])
    assert post_csr(api, "SN-LOST-RMA").status_code == 201
