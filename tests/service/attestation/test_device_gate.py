"""The gate for device callers over real HTTP, the real emulator and a real store (SQLite and
PostgreSQL): the service runs as it does behind nginx (PROVISIONER_BEHIND_PROXY), and each request
carries the X-Client-Certificate header nginx sets for a device's TLS certificate; the TLS
listener itself is tested in test_mutual_tls.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from attested import (
    PROBLEMS,
    audit_of,
    new_csr,
    nginx_header,
    problem_type,
    register_ca,
    until_trusted,
)
from sqlalchemy import create_engine, update

from emulator import Emulator, Fault
from emulator.security.idevids import Manufacturer
from service.store.tables import enrollments


@pytest.fixture
def gated(start_service: Any, database_url: str) -> Any:
    api = start_service(PROVISIONER_DATABASE_URL=database_url, PROVISIONER_BEHIND_PROXY="true")
    api.database_url = database_url
    return api


@pytest.fixture(scope="module")
def maker() -> Manufacturer:
    return Manufacturer.create("Gate Devices")


def as_device(api: Any, certificate: Any, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    headers = {"X-Client-Certificate": nginx_header(certificate), **kwargs.pop("headers", {})}
    return api.post("/provision", json=body if body is not None else {}, key=None, headers=headers, **kwargs)


def registered(api: Any, maker: Manufacturer, **fields: Any) -> str:
    return str(register_ca(api.post, maker.ca_pem(), **fields)["caId"])


def test_a_device_provisions_with_its_certificate_alone(
    gated: Any, maker: Manufacturer, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    ca_id = registered(gated, maker)
    _, certificate = maker.issue("GATE-0001")
    response = until_trusted(lambda: as_device(gated, certificate, {"csr": new_csr()}))
    assert response.status_code == 201, response.text
    assert response.json()["thingName"] == "demo-GATE-0001"
    assert "privateKey" not in response.json()
    [record] = audit_of(gated.get, certificate)
    assert record["outcome"] == "provisioned" and record["keyId"] is None
    # The log line names the device (its CA and serial), not "key=None".
    [line] = [
        r.getMessage() for r in caplog.records if r.name == "service.audit" and "GATE-0001" in r.getMessage()
    ]
    assert f"device_ca={ca_id} device_serial={record['deviceSerial']}" in line and "key=" not in line
    assert record["deviceIssuer"] == certificate.issuer.rfc4514_string()
    assert record["parameters"] == {"SerialNumber": "GATE-0001"}


def test_once_group_refuses_a_second_provision_and_allow_takes_it(gated: Any, maker: Manufacturer) -> None:
    ca_id = registered(gated, maker)
    _, certificate = maker.issue("GATE-0002")
    assert until_trusted(lambda: as_device(gated, certificate, {"csr": new_csr()})).status_code == 201
    again = as_device(gated, certificate, {"csr": new_csr()})
    assert again.status_code == 409 and again.json()["thingName"] == "demo-GATE-0002", again.text
    # The group's policy is the device's: allow it, and the same device provisions again.
    assert (
        gated.request("PATCH", f"/admin/device-cas/{ca_id}", json={"reprovision": "allow"}).status_code == 200
    )
    deadline = time.monotonic() + 5  # every worker has the new revision within 2 s
    while (response := as_device(gated, certificate, {"csr": new_csr()})).status_code == 409:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.2)
    assert response.status_code == 201, response.text


def test_the_body_adds_only_parameters_the_group_leaves_open(
    gated: Any, maker: Manufacturer, emulator: Emulator
) -> None:
    registered(gated, maker)
    _, certificate = maker.issue("GATE-0003")
    forged = until_trusted(
        lambda: as_device(
            gated, certificate, {"parameters": {"SerialNumber": "SOMEONE-ELSE"}, "csr": new_csr()}
        )
    )
    assert forged.status_code == 422, forged.text
    assert list(forged.json()["errors"]) == ["parameters.SerialNumber"]
    same = as_device(gated, certificate, {"parameters": {"SerialNumber": "GATE-0003"}, "csr": new_csr()})
    assert same.status_code == 201, same.text
    thing = emulator.registry.describe_thing("demo-GATE-0003")
    assert thing is not None and thing["attributes"]["location"] == "factory"


def test_an_open_parameter_from_the_body_reaches_the_template(
    gated: Any, maker: Manufacturer, emulator: Emulator
) -> None:
    registered(gated, maker)
    _, certificate = maker.issue("GATE-0004")
    body = {"templateName": "demo", "parameters": {"DeviceLocation": "line-7"}, "csr": new_csr()}
    response = until_trusted(lambda: as_device(gated, certificate, body))
    assert response.status_code == 201, response.text
    thing = emulator.registry.describe_thing("demo-GATE-0004")
    assert thing is not None and thing["attributes"]["location"] == "line-7"


def test_a_csr_with_the_device_certificates_key_is_refused(gated: Any, maker: Manufacturer) -> None:
    registered(gated, maker)
    key, certificate = maker.issue("GATE-0005")
    response = until_trusted(lambda: as_device(gated, certificate, {"csr": new_csr(key)}))
    assert response.status_code == 422, response.text
    assert problem_type(response) == "operational-key-reused"
    [record] = audit_of(gated.get, certificate)
    assert record["problem"] == "operational-key-reused" and record["deviceSerial"]
    # Nothing was reserved: a new key provisions.
    assert as_device(gated, certificate, {"csr": new_csr()}).status_code == 201


def test_group_quota_counts_provisions_and_a_failure_gives_its_unit_back(
    gated: Any, maker: Manufacturer, emulator: Emulator
) -> None:
    ca_id = registered(gated, maker, maxProvisions=1)
    _, first = maker.issue("GATE-0006")
    _, second = maker.issue("GATE-0007")
    emulator.set_fault("register_thing", Fault(reject=(400, "InvalidRequestException", "no"), count=1))
    failed = until_trusted(lambda: as_device(gated, first, {"csr": new_csr()}))
    assert failed.status_code == 400, failed.text  # AWS's rejection: nothing was provisioned
    assert as_device(gated, first, {"csr": new_csr()}).status_code == 201
    over = as_device(gated, second, {"csr": new_csr()})
    assert over.status_code == 403 and over.json()["rule"] == "quota-exhausted", over.text
    assert gated.get(f"/admin/device-cas/{ca_id}").json()["provisions"] == 1


def test_group_rate_is_429_with_retry_after(gated: Any, maker: Manufacturer) -> None:
    registered(gated, maker, ratePerMinute=2, reprovision="allow")
    _, certificate = maker.issue("GATE-0008")
    answers = [until_trusted(lambda: as_device(gated, certificate, {"csr": new_csr()}))]
    answers += [as_device(gated, certificate, {"csr": new_csr()}) for _ in range(2)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert "limited to 2 requests a minute" in limited[0].json()["detail"]


def test_an_unrecorded_claim_never_lapses_to_free_on_a_once_group(gated: Any, maker: Manufacturer) -> None:
    registered(gated, maker)
    _, certificate = maker.issue("GATE-0009")
    first = until_trusted(lambda: as_device(gated, certificate, {"csr": new_csr()}))
    assert first.status_code == 201
    # As a holder that died after AWS answered leaves it: held past its deadline, outcome unknown.
    engine = create_engine(gated.database_url)
    with engine.begin() as db:
        db.execute(
            update(enrollments)
            .where(enrollments.c.value == audit_of(gated.get, certificate)[0]["deviceFingerprint"])
            .values(provisions=0, claim="dead-holder", claim_expires_at=enrollments.c.created_at)
        )
    engine.dispose()
    response = as_device(gated, certificate, {"csr": new_csr()})
    assert response.status_code == 409, response.text
    assert "may already be provisioned" in response.json()["detail"]


def test_a_key_caller_cannot_claim_a_devices_entry(gated: Any, maker: Manufacturer) -> None:
    ca_id = registered(gated, maker)
    _, certificate = maker.issue("GATE-0010")
    assert until_trusted(lambda: as_device(gated, certificate, {"csr": new_csr()})).status_code == 201
    entry = {f"device-ca:{ca_id}": audit_of(gated.get, certificate)[0]["deviceFingerprint"]}
    response = gated.post(
        "/provision", json={"templateName": "demo", "parameters": {"SerialNumber": "GATE-KEY", **entry}}
    )
    # The key provisions its own device; the device's entry is not its to claim or to be refused by.
    assert response.status_code != 409, response.text


def test_an_api_key_wins_over_a_certificate(gated: Any, maker: Manufacturer) -> None:
    _, certificate = maker.issue("GATE-0011")  # its CA is not registered: it would be refused
    body = {"templateName": "demo", "parameters": {"SerialNumber": "GATE-0011"}}
    response = gated.post(
        "/provision", json=body, headers={"X-Client-Certificate": nginx_header(certificate)}
    )
    assert response.status_code == 201, response.text


def test_without_a_key_or_certificate_it_is_401(gated: Any) -> None:
    response = gated.post("/provision", json={"templateName": "demo"}, key=None)
    assert response.status_code == 401
    assert response.json()["type"] == PROBLEMS + "unauthorized"


def test_not_behind_the_proxy_the_header_is_not_believed(
    start_service: Any, maker: Manufacturer, tmp_path: Path
) -> None:
    api = start_service(PROVISIONER_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}")
    registered(api, maker)
    _, certificate = maker.issue("GATE-0012")
    response = as_device(api, certificate, {"csr": new_csr()})
    assert response.status_code == 401, response.text


def test_decommissioning_a_once_devices_thing_lets_it_provision_again(
    start_service: Any, emulator: Emulator, maker: Manufacturer, tmp_path: Path
) -> None:
    api = start_service(
        PROVISIONER_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}",
        PROVISIONER_BEHIND_PROXY="true",
        PROVISIONER_CONTROL_ENDPOINT=emulator.urls["control-tls"],
        PROVISIONER_CONTROL_CA_FILE=str(emulator.ca_path),
        PROVISIONER_ORPHAN_SWEEP_SECONDS="0",
    )
    registered(api, maker)
    _, certificate = maker.issue("GATE-RMA")
    first = until_trusted(lambda: as_device(api, certificate, {"csr": new_csr()}))
    assert first.status_code == 201, first.text
    assert as_device(api, certificate, {"csr": new_csr()}).status_code == 409
    done = api.post("/admin/devices/demo-GATE-RMA/decommission")
    assert done.status_code == 200 and done.json()["enrollmentsReopened"] == 1, done.text
    again = as_device(api, certificate, {"csr": new_csr()})
    assert again.status_code == 201, again.text
    assert again.json()["certificateId"] != first.json()["certificateId"]
