"""The operator page's lifecycle views in Chromium, against the real service app and the real
emulator: revoke from the device view (a confirmation that needs the certificate's first 8
characters typed) disconnects the device within 2 s and it cannot reconnect; decommission (the
thing's name typed) lets a `once` device provision again; the orphan report and its sweep; reconcile
as a table and a CSV download."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from device_keys import make_csr
from iot_control import connect_refused, iot_client
from issued_devices import IssuedDevice, provision_through
from playwright.sync_api import Page, expect
from ui_service import UiService

from emulator import Fault

WITHIN = 2.0


def admin_post(service: UiService) -> Callable[..., requests.Response]:
    def post(path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {service.admin_key}"}
        return requests.post(f"{service.base_url}{path}", headers=headers, timeout=30, **kwargs)

    return post


def sign_in_and_open(page: Page, service: UiService, view: str) -> None:
    page.goto(service.page_url)
    page.fill("#api-key", service.admin_key)
    page.click("#sign-in-submit")
    expect(page.locator("#who")).to_be_visible()
    page.click(f'#tabs button[data-view="{view}"]')
    expect(page.locator(f"#view-{view}")).to_be_visible()


def open_device(page: Page, thing_name: str) -> None:
    page.fill('#device-find [name="thingName"]', thing_name)
    page.click('#device-find button[type="submit"]')
    expect(page.locator("#device-name")).to_have_text(thing_name)


def provisioned_and_open(page: Page, service: UiService, directory: Path, serial: str) -> IssuedDevice:
    """A device provisioned with `serial` by the admin key, open in the devices view of the page."""
    device = provision_through(admin_post(service), directory, serial)
    sign_in_and_open(page, service, "devices")
    open_device(page, device.thing_name)
    return device


def test_revoke_from_the_page_disconnects_the_device_within_2_s_and_it_cannot_reconnect(
    page: Page, ui_service: UiService, tmp_path: Path, screenshot: Callable[[str], Path]
) -> None:
    emulator = ui_service.emulator
    device: IssuedDevice = provision_through(admin_post(ui_service), tmp_path, "SN-PAGE-REVOKE")
    connected = device.client(emulator).connect()
    try:
        sign_in_and_open(page, ui_service, "devices")
        expect(page.locator("#devices-table")).to_contain_text(device.thing_name)
        open_device(page, device.thing_name)
        row = page.locator("#device-certificates tbody tr")
        expect(row).to_contain_text("ACTIVE")
        expect(page.locator("#device-registrations tbody tr")).to_contain_text("provisioned")
        screenshot("device")

        row.get_by_role("button", name="Revoke…").click()
        dialog = page.locator("#confirm-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#confirm-word")).to_have_text(device.certificate_id[:8])
        expect(page.locator("#confirm-ok")).to_be_disabled()
        page.fill("#confirm-input", "wrong")
        expect(page.locator("#confirm-ok")).to_be_disabled()
        page.fill("#confirm-input", device.certificate_id[:8])
        screenshot("revoke-confirm")
        clicked = time.monotonic()
        page.click("#confirm-ok")
        assert connected.disconnected.wait(5), "still connected 5 s after the revoke from the page"
        gone = time.monotonic()
        assert gone - clicked < WITHIN, f"disconnected {gone - clicked:.2f} s after the click"
        print(f"page revoke: disconnected {gone - clicked:.2f} s after the confirmation was clicked")
        expect(row).to_contain_text("REVOKED")
        expect(page.locator("#device-events tbody tr")).to_contain_text("revoke")
    finally:
        connected.close()
    assert connect_refused(device.client(emulator)) == "closed by the server before CONNACK"


def test_cancelling_the_confirmation_changes_nothing(
    page: Page, ui_service: UiService, tmp_path: Path
) -> None:
    device = provisioned_and_open(page, ui_service, tmp_path, "SN-PAGE-CANCEL")
    page.locator("#device-certificates tbody tr").get_by_role("button", name="Suspend…").click()
    page.fill("#confirm-input", device.certificate_id[:8])
    page.click("#confirm-cancel")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    page.click("#device-decommission")
    page.keyboard.press("Escape")
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert ui_service.emulator.registry.certificate_status(device.certificate_id) == "ACTIVE"
    assert ui_service.emulator.registry.describe_thing(device.thing_name) is not None


def test_decommission_from_the_page_lets_a_once_device_provision_again(
    page: Page, ui_service: UiService, tmp_path: Path, screenshot: Callable[[str], Path]
) -> None:
    post = admin_post(ui_service)
    assert post("/admin/enrollments", json={"template": "demo", "value": "SN-PAGE-RMA"}).status_code == 201
    device = provision_through(post, tmp_path / "first", "SN-PAGE-RMA")
    sign_in_and_open(page, ui_service, "devices")
    open_device(page, device.thing_name)
    expect(page.locator("#device-facts")).to_contain_text("demo SerialNumber=SN-PAGE-RMA · once")
    page.click("#device-decommission")
    expect(page.locator("#confirm-word")).to_have_text(device.thing_name)
    page.fill("#confirm-input", device.thing_name)
    screenshot("decommission-confirm")
    page.click("#confirm-ok")
    expect(page.locator("#devices-done")).to_have_text(
        f"Decommissioned {device.thing_name}. Its enrollment may provision again."
    )
    assert ui_service.emulator.registry.describe_thing(device.thing_name) is None
    again = provision_through(post, tmp_path / "again", "SN-PAGE-RMA")
    assert again.thing_name == device.thing_name and again.certificate_id != device.certificate_id


def test_rotate_from_the_page_gives_a_certificate_for_the_csr(
    page: Page, ui_service: UiService, tmp_path: Path
) -> None:
    provisioned_and_open(page, ui_service, tmp_path, "SN-PAGE-ROTATE")
    page.click("#device-rotate-panel summary")
    _, csr = make_csr("SN-PAGE-ROTATE")
    page.fill('#device-rotate [name="csr"]', csr)
    page.fill('#device-rotate [name="graceSeconds"]', "600")
    page.click("#device-rotate-submit")
    expect(page.locator("#device-rotated")).to_be_visible()
    new_id = page.text_content("#device-rotated-id") or ""
    expect(page.locator("#device-certificates tbody tr")).to_have_count(2)
    expect(page.locator("#device-certificates")).to_contain_text("pending")
    with page.expect_download() as download:
        page.click("#device-rotated-download")
    pem = Path(download.value.path()).read_text()
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert ui_service.emulator.registry.certificate_status(new_id) == "ACTIVE"


def test_the_orphan_report_sweeps_and_reconcile_downloads_csv(
    page: Page, ui_service: UiService, tmp_path: Path, screenshot: Callable[[str], Path]
) -> None:
    emulator = ui_service.emulator
    post = admin_post(ui_service)
    emulator.set_fault(
        "register_thing", Fault(reject=(400, "InvalidParameterException", "refused by a test"))
    )
    _, csr = make_csr("SN-PAGE-ORPHAN")
    refused = post(
        "/provision",
        json={"templateName": "demo", "parameters": {"SerialNumber": "SN-PAGE-ORPHAN"}, "csr": csr},
    )
    emulator.faults.clear()
    assert refused.status_code == 400
    revoked = provision_through(post, tmp_path, "SN-PAGE-DRIFT")
    iot_client(emulator).update_certificate(certificateId=revoked.certificate_id, newStatus="REVOKED")

    sign_in_and_open(page, ui_service, "orphans")
    row = page.locator("#orphans-table tbody tr")
    expect(row).to_contain_text("register-refused")
    expect(row).to_contain_text("pending")
    expect(page.locator("#orphans-counts")).to_have_text("orphan pending: 1")
    screenshot("orphans")
    page.click("#orphans-sweep")
    page.click("#confirm-ok")
    expect(page.locator("#orphans-status")).to_have_text("Retired 1, gone already 0, kept 0, failed 0.")
    expect(row).to_contain_text("retired")

    page.click('#tabs button[data-view="reconcile"]')
    page.click("#reconcile-submit")
    table = page.locator("#reconcile-table tbody tr")
    expect(table).to_have_count(1)
    expect(table).to_contain_text("status-differs")
    expect(table).to_contain_text("REVOKED")
    screenshot("reconcile")
    with page.expect_download() as download:
        page.click("#reconcile-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [(r["kind"], r["certificateId"], r["awsStatus"]) for r in rows] == [
        ("status-differs", revoked.certificate_id, "REVOKED")
    ]
