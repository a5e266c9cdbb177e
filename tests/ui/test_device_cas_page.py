"""The operator page's Device CAs view in Chromium, against the real service app (SQLite) and the
real emulator: register a manufacturer CA for a template with its parameter sources, policy and
limits; change it; block a device by serial and by fingerprint and unblock it; load a CRL from a
file and drop it; delete the CA behind a confirmation that needs its id typed. Each step is
checked against the admin API, and a device of the CA provisions (the header nginx would send)
through the same app, then is refused once blocked."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from attested import fingerprint, new_csr, nginx_header
from browser import expect_problem
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Page, expect
from ui_service import UiService, serve_ui

from emulator import Emulator
from emulator.security.idevids import Manufacturer


@pytest.fixture
def ui_service(emulator: Emulator, tmp_path: Path) -> Iterator[UiService]:
    """As the page's other tests have it, but as behind nginx: a device's certificate comes in the
    header nginx sets (the TLS listener itself: tests/service/attestation)."""
    with serve_ui(emulator, tmp_path, PROVISIONER_BEHIND_PROXY="true") as service:
        yield service


def admin(service: UiService, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {service.admin_key}"}
    return requests.request(method, f"{service.base_url}{path}", headers=headers, timeout=30, **kwargs)


def sign_in_and_open(page: Page, service: UiService) -> None:
    page.goto(service.page_url)
    page.fill("#api-key", service.admin_key)
    page.click("#sign-in-submit")
    expect(page.locator("#who")).to_be_visible()
    page.click('#tabs button[data-view="devicecas"]')
    expect(page.locator("#view-devicecas")).to_be_visible()


def only_ca(service: UiService) -> dict[str, Any]:
    [ca] = admin(service, "GET", "/admin/device-cas").json()["items"]
    return dict(admin(service, "GET", f"/admin/device-cas/{ca['caId']}").json())


def test_register_change_block_crl_and_delete_a_device_ca(
    page: Page, ui_service: UiService, tmp_path: Path, screenshot: Callable[[str], Path]
) -> None:
    maker = Manufacturer.create("Page Devices")
    pem_file = tmp_path / "manufacturer-ca.pem"
    pem_file.write_bytes(maker.ca_pem())
    sign_in_and_open(page, ui_service)
    expect(page.locator("#devicecas-table")).to_contain_text("No device CAs registered yet.")

    # Register: the PEM from a file, a parameter from the certificate and a fixed one, limits.
    page.click("#deviceca-register-panel summary")
    form = page.locator("#deviceca-register")
    form.locator('[name="template"]').fill("demo")
    form.locator('[name="name"]').fill("Page line")
    page.set_input_files("#deviceca-pem-file", str(pem_file))
    expect(form.locator('[name="certificates"]')).to_have_value(maker.ca_pem().decode())
    form.locator('[name="parameters"]').fill(
        "SerialNumber from subject.serialNumber\nDeviceLocation = line-9"
    )
    form.locator('[name="maxProvisions"]').fill("100")
    form.locator('[name="ratePerMinute"]').fill("600")
    screenshot("device-ca-register")
    page.click("#deviceca-register-submit")
    expect(page.locator("#deviceca")).to_be_visible()
    ca = only_ca(ui_service)
    assert ca["template"] == "demo" and ca["name"] == "Page line" and ca["enabled"] is True
    assert ca["parameters"] == {
        "SerialNumber": {"from": "subject.serialNumber"},
        "DeviceLocation": {"value": "line-9"},
    }
    assert (ca["maxProvisions"], ca["ratePerMinute"], ca["reprovision"]) == (100, 600, "once")
    expect(page.locator("#devicecas-table")).to_contain_text(ca["caId"])

    # A device of this CA provisions, its parameters taken as registered.
    _, certificate = maker.issue("PAGE-000001")
    device = {"X-Client-Certificate": nginx_header(certificate), "Content-Type": "application/json"}

    def as_device() -> requests.Response:
        return requests.post(
            f"{ui_service.base_url}/provision", json={"csr": new_csr()}, headers=device, timeout=30
        )

    deadline = time.monotonic() + 5
    while (response := as_device()).status_code == 403 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert response.status_code == 201, response.text
    thing = ui_service.emulator.registry.describe_thing("demo-PAGE-000001")
    assert thing is not None and thing["attributes"]["location"] == "line-9"

    # Change: reprovision allow, no quota.
    change = page.locator("#deviceca-change")
    expect(change.locator('[name="maxProvisions"]')).to_have_value("100")
    change.locator('[name="reprovision"]').select_option("allow")
    change.locator('[name="maxProvisions"]').fill("")
    page.click("#deviceca-change-submit")
    expect(page.locator("#deviceca-status")).to_contain_text("Saved")
    ca = only_ca(ui_service)
    assert (ca["reprovision"], ca["maxProvisions"], ca["ratePerMinute"]) == ("allow", None, 600)

    # Block by serial and by fingerprint (colons and capitals as a tool prints it).
    block = page.locator("#deviceca-block")
    block.locator('[name="value"]').fill("PAGE-000001")
    block.locator('[name="reason"]').fill("returned")
    page.click("#deviceca-block-submit")
    expect(page.locator("#deviceca-blocks")).to_contain_text("PAGE-000001")
    printed = ":".join(fingerprint(certificate)[i : i + 2] for i in range(0, 64, 2)).upper()
    block.locator('[name="kind"]').select_option("fingerprint")
    block.locator('[name="value"]').fill(printed)
    page.click("#deviceca-block-submit")
    expect(page.locator("#deviceca-blocks")).to_contain_text(fingerprint(certificate))
    assert {(b["kind"], b["value"]) for b in only_ca(ui_service)["blocks"]} == {
        ("serial", "PAGE-000001"),
        ("fingerprint", fingerprint(certificate)),
    }
    deadline = time.monotonic() + 5
    while (response := as_device()).status_code != 403 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert response.status_code == 403 and response.json()["type"].endswith("/device-blocked"), response.text
    screenshot("device-ca")
    page.locator("#deviceca-blocks tr", has_text="returned").get_by_role("button", name="Unblock").click()
    expect(page.locator("#deviceca-blocks")).not_to_contain_text("returned")
    assert [b["kind"] for b in only_ca(ui_service)["blocks"]] == ["fingerprint"]

    # The manufacturer's CRL, from a DER file (sent in base64), then dropped.
    crl_file = tmp_path / "maker.crl"
    crl_pem = maker.intermediate.crl([certificate])
    crl_file.write_bytes(x509.load_pem_x509_crl(crl_pem).public_bytes(serialization.Encoding.DER))
    page.set_input_files("#deviceca-crl-file", str(crl_file))
    page.click("#deviceca-crl-submit")
    expect(page.locator("#deviceca-crl")).to_contain_text("1 revoked")
    assert only_ca(ui_service)["crl"]["revoked"] == 1
    page.click("#deviceca-crl-drop")
    expect(page.locator("#deviceca-crl")).to_contain_text("No CRL loaded.")
    assert only_ca(ui_service)["crl"] is None

    # Delete: the button works only once the CA's id is typed; Escape changes nothing.
    page.click("#deviceca-delete")
    expect(page.locator("#confirm-ok")).to_be_disabled()
    page.keyboard.press("Escape")
    assert len(admin(ui_service, "GET", "/admin/device-cas").json()["items"]) == 1
    page.click("#deviceca-delete")
    page.fill("#confirm-input", ca["caId"])
    page.click("#confirm-ok")
    expect(page.locator("#devicecas-table")).to_contain_text("No device CAs registered yet.")
    assert admin(ui_service, "GET", "/admin/device-cas").json()["items"] == []


def test_a_bad_registration_names_its_fields(page: Page, ui_service: UiService) -> None:
    sign_in_and_open(page, ui_service)
    page.click("#deviceca-register-panel summary")
    form = page.locator("#deviceca-register")
    form.locator('[name="template"]').fill("demo")
    form.locator('[name="certificates"]').fill(
        "-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n"
    )
    form.locator('[name="parameters"]').fill("SerialNumber from subject.serialNumber ~ ^no-group$")
    page.click("#deviceca-register-submit")
    expect_problem(page, "#deviceca-register-error", "certificates:", "parameters.SerialNumber")
    assert admin(ui_service, "GET", "/admin/device-cas").json()["items"] == []
