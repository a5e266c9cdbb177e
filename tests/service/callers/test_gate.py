"""The gate over real HTTP, a real SQLite store and the real emulator: keys, scopes, enrollments,
rates, quotas, idempotent retries and the audit trail."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from device_keys import make_csr
from scraped import scrape
from sqlalchemy import create_engine, select

from emulator import Fault
from service.store.tables import metadata


def issue_key(api: Any, **spec: Any) -> str:
    response = api.post("/admin/keys", json=spec)
    assert response.status_code == 201, response.text
    return str(response.json()["apiKey"])


def provision(
    api: Any,
    key: str,
    serial: str,
    *,
    template: str = "demo",
    csr: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    body: dict[str, Any] = {"templateName": template, "parameters": {"SerialNumber": serial}}
    if csr is not None:
        body["csr"] = csr
    return api.post("/provision", json=body, key=key, headers=headers or {})


@pytest.fixture
def gated(start_service: Any, database_url: str) -> Any:
    """The real stack on the shared emulator, its store on SQLite or on a real PostgreSQL."""
    api = start_service(PROVISIONER_DATABASE_URL=database_url)
    api.database_url = database_url
    return api


def stored_text(database_url: str) -> bytes:
    """Everything the store holds, as bytes to search: every row of every table, and for SQLite
    the database files themselves (free pages too)."""
    engine = create_engine(database_url)
    with engine.connect() as db:
        rows = [str(row) for table in metadata.sorted_tables for row in db.execute(select(table))]
    engine.dispose()
    text = "\n".join(rows).encode()
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(FULL)")
        text += b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    return text


def test_issued_key_provisions_and_is_shown_once(gated: Any, emulator: Any) -> None:
    created = gated.post("/admin/keys", json={"name": "line 3", "templates": ["demo"]})
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    token, key = created.json()["apiKey"], created.json()["key"]
    assert token.startswith(f"iotp_{key['keyId']}_") and key["state"] == "active"
    response = provision(gated, token, "SN-100001")
    assert response.status_code == 201, response.text
    assert emulator.registry.describe_thing("demo-SN-100001") is not None
    listed = gated.get("/admin/keys").json()["items"]
    assert token not in str(listed)
    mine = next(k for k in listed if k["keyId"] == key["keyId"])
    assert mine["lastUsedAt"] is None or mine["lastUsedAt"].endswith("Z")


def test_unknown_revoked_and_expired_keys_are_401_alike(gated: Any) -> None:
    token = issue_key(gated)
    key_id = token.split("_")[1]
    # A key cannot be made expired (422): this one expires a moment after it is made.
    expires = datetime.now(UTC) + timedelta(seconds=0.5)
    expired = issue_key(gated, expiresAt=expires.isoformat())
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.05)
    revoked = gated.request("DELETE", f"/admin/keys/{key_id}")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    forged = f"iotp_{key_id}_{'A' * 43}"
    details = set()
    for bad in (token, expired, forged, "iotp_k000000000000_" + "B" * 43, "not-a-key-at-all-123"):
        response = provision(gated, bad, "SN-1")
        assert response.status_code == 401
        details.add(response.json()["detail"])
    assert details == {"The API key is not valid."}


@pytest.mark.parametrize(
    ("spec", "serial", "csr", "rule"),
    [
        ({"templates": ["other"]}, "SN-123456", False, "template-not-allowed"),
        ({"parameterRules": {"SerialNumber": "^SN-[0-9]{6}$"}}, "SN-12", True, "parameter-rule"),
        ({"parameterRules": {"Batch": "^B[0-9]+$"}}, "SN-123456", True, "parameter-rule"),
        ({"serverKeys": False}, "SN-123456", False, "server-keys-not-allowed"),
        ({"enrolledOnly": True}, "SN-123456", True, "not-enrolled"),
    ],
)
def test_scope_refusals_are_403_naming_the_rule(
    gated: Any, emulator: Any, spec: dict[str, Any], serial: str, csr: bool, rule: str
) -> None:
    token = issue_key(gated, **spec)
    response = provision(gated, token, serial, csr=make_csr()[1] if csr else None)
    assert response.status_code == 403, response.text
    assert response.json()["rule"] == rule
    assert emulator.registry.list_things() == []


def test_parameter_rule_that_matches_provisions(gated: Any) -> None:
    token = issue_key(gated, parameterRules={"SerialNumber": "^SN-[0-9]{6}$"}, serverKeys=False)
    assert provision(gated, token, "SN-123456", csr=make_csr()[1]).status_code == 201


def test_provision_quota_counts_only_successes(gated: Any, emulator: Any) -> None:
    token = issue_key(gated, maxProvisions=2)
    assert provision(gated, token, "Q-1").status_code == 201
    assert provision(gated, token, "Q-2", template="no-such-template").status_code == 404
    assert provision(gated, token, "Q-3").status_code == 201
    refused = provision(gated, token, "Q-4")
    assert refused.status_code == 403 and refused.json()["rule"] == "quota-exhausted"
    key_id = token.split("_")[1]
    assert gated.get(f"/admin/keys/{key_id}").json()["provisions"] == 2
    assert sorted(t["thingName"] for t in emulator.registry.list_things()) == ["demo-Q-1", "demo-Q-3"]


def test_rate_per_minute_is_429_with_retry_after(gated: Any) -> None:
    left = 60 - time.time() % 60
    if left < 8:  # keep the three requests inside one minute window
        time.sleep(left + 0.1)
    token = issue_key(gated, ratePerMinute=2)
    assert provision(gated, token, "R-1").status_code == 201
    assert provision(gated, token, "R-2").status_code == 201
    limited = provision(gated, token, "R-3")
    assert limited.status_code == 429, limited.text
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["type"].endswith("/rate-limited")


def test_enrollments_once_allow_and_disabled(gated: Any, emulator: Any) -> None:
    imported = gated.post(
        "/admin/enrollments/import?template=demo",
        data="SerialNumber,reprovision,enabled\nE-1,once,true\nE-2,allow,\nE-3,once,false\n",
        headers={"Content-Type": "text/csv"},
    )
    assert imported.status_code == 200, imported.text
    assert imported.json() == {"added": 3, "updated": 0}
    token = issue_key(gated, enrolledOnly=True)
    first = provision(gated, token, "E-1")
    assert first.status_code == 201
    again = provision(gated, token, "E-1")
    assert again.status_code == 409 and again.json()["thingName"] == "demo-E-1"
    assert again.json()["certificateId"] == first.json()["certificateId"]
    assert provision(gated, token, "E-2").status_code == 201
    assert provision(gated, token, "E-2").status_code == 201
    # A disabled entry refuses even the bootstrap admin key, which has no scope at all.
    disabled = provision(gated, gated.key, "E-3")
    assert disabled.status_code == 403 and disabled.json()["rule"] == "enrollment-disabled"
    listed = gated.get("/admin/enrollments?template=demo").json()["items"]
    by_value = {e["value"]: e for e in listed}
    assert by_value["E-1"]["provisions"] == 1 and by_value["E-1"]["lastThingName"] == "demo-E-1"
    assert by_value["E-2"]["provisions"] == 2
    assert by_value["E-3"]["provisions"] == 0
    enabled = gated.post("/admin/enrollments", json={"template": "demo", "value": "E-3", "enabled": True})
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True
    assert provision(gated, token, "E-3").status_code == 201


def test_a_bad_csv_line_is_named_and_nothing_is_imported(gated: Any) -> None:
    response = gated.post(
        "/admin/enrollments/import?template=demo",
        data="SerialNumber,reprovision\nG-1,once\nG-2,sometimes\n,once\nG-1,allow\n",
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert set(errors) == {"line 3", "line 4", "line 5"}
    assert "sometimes" in errors["line 3"][0] and "line 2" in errors["line 5"][0]
    assert gated.get("/admin/enrollments").json()["items"] == []


def test_concurrent_provisions_of_a_once_enrollment_make_one_identity(gated: Any, emulator: Any) -> None:
    gated.post("/admin/enrollments", json={"template": "demo", "value": "C-1"})
    emulator.set_fault("register_thing", Fault(latency=(0.3, 0.3)))
    statuses: list[int] = []

    def call() -> None:
        statuses.append(provision(gated, gated.key, "C-1", csr=make_csr()[1]).status_code)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [201, 409]
    assert [t["thingName"] for t in emulator.registry.list_things()] == ["demo-C-1"]


def test_idempotent_retry_replays_the_first_answer(gated: Any, emulator: Any) -> None:
    _, csr = make_csr()
    headers = {"Idempotency-Key": "batch-7/row-12"}
    first = provision(gated, gated.key, "I-1", csr=csr, headers=headers)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    replay = provision(gated, gated.key, "I-1", csr=csr, headers=headers)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert len([c for c in emulator.registry.list_certificates() if c["owner"] == "fleet-provisioning"]) == 1
    other = provision(gated, gated.key, "I-2", csr=csr, headers=headers)
    assert other.status_code == 422 and other.json()["type"].endswith("/idempotency-key-reused")
    # Scoped to the calling key: another key may use the same Idempotency-Key for its own request.
    token = issue_key(gated)
    assert provision(gated, token, "I-3", headers=headers).status_code == 201


def test_replay_of_a_server_key_provision_is_410_naming_the_identity(gated: Any) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = provision(gated, gated.key, "S-1", headers=headers)
    assert first.status_code == 201 and "privateKey" in first.json()
    replay = provision(gated, gated.key, "S-1", headers=headers)
    assert replay.status_code == 410
    assert replay.json()["thingName"] == "demo-S-1"
    assert replay.json()["certificateId"] == first.json()["certificateId"]
    assert "PRIVATE KEY" not in replay.text


def test_a_retry_while_the_first_runs_is_409_and_a_failed_first_frees_the_key(
    gated: Any, emulator: Any
) -> None:
    emulator.set_fault("register_thing", Fault(latency=(0.5, 0.5)))
    headers = {"Idempotency-Key": "slow-1"}
    _, csr = make_csr()
    results: list[Any] = []
    first = threading.Thread(
        target=lambda: results.append(provision(gated, gated.key, "P-1", csr=csr, headers=headers))
    )
    first.start()
    # In flight once its certificate exists (the Idempotency-Key was recorded before that).
    deadline = time.monotonic() + 20
    while not [c for c in emulator.registry.list_certificates() if c["owner"] == "fleet-provisioning"]:
        assert time.monotonic() < deadline, "the first request never reached AWS IoT"
        time.sleep(0.02)
    running = provision(gated, gated.key, "P-1", csr=csr, headers=headers)
    first.join(30)
    assert running.status_code == 409 and running.json()["type"].endswith("/idempotency-in-progress")
    assert results[0].status_code == 201
    emulator.set_fault("register_thing", Fault())
    failed = provision(gated, gated.key, "P-2", template="nope", headers={"Idempotency-Key": "f-1"})
    assert failed.status_code == 404
    retried = provision(gated, gated.key, "P-2", template="nope", headers={"Idempotency-Key": "f-1"})
    assert retried.status_code == 404 and "Idempotent-Replayed" not in retried.headers


def test_bad_idempotency_key_is_400(gated: Any) -> None:
    response = provision(gated, gated.key, "B-1", headers={"Idempotency-Key": "has space"})
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["detail"]


def test_admin_api_needs_the_admin_role(gated: Any) -> None:
    token = issue_key(gated)
    response = gated.get("/admin/keys", key=token)
    assert response.status_code == 403 and response.json()["rule"] == "admin-only"
    assert gated.get("/admin/keys", key=None).status_code == 401
    admin = issue_key(gated, role="admin")
    assert gated.get("/admin/keys", key=admin).status_code == 200


def test_every_attempt_is_recorded_without_secrets(gated: Any, caplog: Any) -> None:
    token = issue_key(gated, templates=["demo"])
    _, csr = make_csr()
    assert provision(gated, token, "A-1", csr=csr, headers={"Idempotency-Key": "a-1"}).status_code == 201
    assert provision(gated, token, "A-1", csr=csr, headers={"Idempotency-Key": "a-1"}).status_code == 201
    server_key = provision(gated, token, "A-2")
    assert provision(gated, token, "A-3", template="other").status_code == 403
    unauthenticated = scrape(gated.get).value("provisioner_unauthenticated_provisions_total")
    assert provision(gated, "wrong-key-0123456789", "A-4").status_code == 401
    # Without a key nobody is accountable: a count, not a row each (else anyone could fill the store).
    assert scrape(gated.get).value("provisioner_unauthenticated_provisions_total") == unauthenticated + 1
    records = gated.get("/admin/registrations?limit=10").json()["items"]
    assert [r["outcome"] for r in records] == ["refused", "provisioned", "replayed", "provisioned"]
    refused = records[0]
    assert refused["template"] == "other" and refused["problem"] == "forbidden/template-not-allowed"
    first = records[3]
    assert first["flow"] == "csr" and first["thingName"] == "demo-A-1" and first["idempotencyKey"] == "a-1"
    assert first["keyId"] == token.split("_")[1] and first["callerAddress"] == "127.0.0.1"
    assert first["parameters"] == {"SerialNumber": "A-1"} and first["durationMs"] > 0
    only = gated.get("/admin/registrations?outcome=replayed").json()["items"]
    assert [r["thingName"] for r in only] == ["demo-A-1"]
    paged = gated.get("/admin/registrations?limit=2").json()
    rest = gated.get(f"/admin/registrations?limit=10&before={paged['next']}").json()["items"]
    assert len(paged["items"]) + len(rest) == 4

    stored = stored_text(gated.database_url)
    assert b"demo-A-1" in stored  # the search does see the records
    secret = token.split("_", 2)[2]
    # Ownership tokens reach only the service's own MQTT connection, so the test cannot know their
    # values: it checks that no record carries the field (no table has a column for one).
    for needle in (
        "PRIVATE KEY",
        secret,
        gated.key,
        server_key.json()["privateKey"][40:80],
        "certificateOwnershipToken",
    ):
        assert needle.encode() not in stored
        assert needle not in caplog.text


def test_certificate_in_a_replay_is_the_callers(gated: Any) -> None:
    key_pem, csr = make_csr()
    headers = {"Idempotency-Key": "c-1"}
    provision(gated, gated.key, "V-1", csr=csr, headers=headers)
    replay = provision(gated, gated.key, "V-1", csr=csr, headers=headers)
    certificate = x509.load_pem_x509_certificate(replay.json()["certificatePem"].encode())
    assert certificate.public_key() == x509.load_pem_x509_csr(csr.encode()).public_key()


def test_without_a_store_only_bootstrap_keys_work_and_admin_is_404(start_service: Any) -> None:
    api = start_service(PROVISIONER_DATABASE_URL="off")
    assert provision(api, api.key, "N-1").status_code == 201
    assert api.get("/admin/keys").status_code == 404
    refused = provision(api, api.key, "N-2", headers={"Idempotency-Key": "x"})
    assert refused.status_code == 400 and "store" in refused.json()["detail"]


def test_refusals_count_against_the_rate(gated: Any) -> None:
    # Or a key could probe scopes and enrollments without limit.
    left = 60 - time.time() % 60
    if left < 8:
        time.sleep(left + 0.1)
    token = issue_key(gated, templates=["other"], ratePerMinute=2)
    statuses = [provision(gated, token, f"P-{i}").status_code for i in range(3)]
    assert statuses == [403, 403, 429]


def test_a_key_pasted_into_a_path_never_reaches_the_log(gated: Any, caplog: Any) -> None:
    token = issue_key(gated)
    caplog.set_level(logging.INFO)
    assert gated.get(f"/admin/keys/{token}").status_code == 404
    secret = token.split("_", 2)[2]
    # The service's own lines (the test server's werkzeug log is not what production runs).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("service"))
    assert secret not in ours and "<redacted>" in ours


def test_a_lost_register_answer_leaves_a_once_enrollment_spent(
    start_service: Any, emulator: Any, database_url: str
) -> None:
    api = start_service(PROVISIONER_DATABASE_URL=database_url, PROVISIONER_STEP_TIMEOUT_SECONDS="1")
    api.post("/admin/enrollments", json={"template": "demo", "value": "L-1"})
    emulator.set_fault("register_thing", Fault(never_answer=True, count=1))
    lost = provision(api, api.key, "L-1", csr=make_csr()[1])
    assert lost.status_code == 504 and lost.json()["step"] == "register"
    again = provision(api, api.key, "L-1", csr=make_csr()[1])
    assert again.status_code == 409 and "may already be provisioned" in again.json()["detail"]
    entry = api.get("/admin/enrollments?template=demo").json()["items"][0]
    assert entry["provisions"] == 1 and entry["lastThingName"] is None
