"""The operator page (/ui/) used as an operator would, in Chromium, against the real service app and
the real emulator: sign in, provision a device with a key made in the browser, download its bundle,
find it in the audit trail; issue a key; import enrollments and read a bad line's error."""

from __future__ import annotations

import json
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests
from browser import expect_problem
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Page, Route, expect
from ui_service import UiService

from emulator import Fault


def sign_in(page: Page, service: UiService, key: str | None = None) -> None:
    page.goto(service.page_url)
    page.fill("#api-key", key or service.admin_key)
    page.click("#sign-in-submit")
    expect(page.locator("#who")).to_be_visible()


def open_view(page: Page, name: str) -> None:
    page.click(f'#tabs button[data-view="{name}"]')
    expect(page.locator(f"#view-{name}")).to_be_visible()


def issue_key(service: UiService, **spec: Any) -> str:
    response = requests.post(
        f"{service.base_url}/admin/keys",
        json=spec,
        headers={"Authorization": f"Bearer {service.admin_key}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["apiKey"]
    return token


def test_admin_provisions_a_device_downloads_its_bundle_and_finds_it_in_the_audit_trail(
    page: Page, ui_service: UiService, tmp_path: Path, screenshot: Callable[[str], Path]
) -> None:
    sign_in(page, ui_service)
    expect(page.locator("#who")).to_have_text("bootstrap-1 · admin")
    page.fill("#template", "demo")
    page.locator(".param-name").first.fill("SerialNumber")
    page.locator(".param-value").first.fill("SN-UI-0001")
    page.click("#provision-submit")
    expect(page.locator("#provision-result")).to_be_visible()
    expect(page.locator("#result-thing")).to_have_text("demo-SN-UI-0001")
    screenshot("provision")

    with page.expect_download() as download:
        page.click("#bundle-download")
    assert download.value.suggested_filename == "demo-SN-UI-0001.zip"
    bundle = tmp_path / "bundle.zip"
    download.value.save_as(bundle)
    with zipfile.ZipFile(bundle) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["certificate.pem", "private.key", "ca.pem", "config.json"]
        files = {name: archive.read(name) for name in archive.namelist()}
        assert archive.getinfo("private.key").external_attr >> 16 == 0o100600

    certificate = x509.load_pem_x509_certificate(files["certificate.pem"])
    private_key = serialization.load_pem_private_key(files["private.key"], password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert certificate.public_key().public_bytes(*spki) == private_key.public_key().public_bytes(*spki)
    ca = x509.load_pem_x509_certificate(files["ca.pem"])
    assert files["ca.pem"] == ui_service.emulator.ca_path.read_bytes()
    certificate.verify_directly_issued_by(ca)
    config = json.loads(files["config.json"])
    assert config["thingName"] == "demo-SN-UI-0001"
    assert config["parameters"] == {"SerialNumber": "SN-UI-0001"}
    assert config["files"] == {"certificate": "certificate.pem", "privateKey": "private.key", "ca": "ca.pem"}

    thing = ui_service.emulator.registry.describe_thing("demo-SN-UI-0001")
    assert thing is not None
    assert thing["principals"] == [config["certificateId"]]

    open_view(page, "audit")
    row = page.locator("#audit-table tbody tr").filter(has_text="demo-SN-UI-0001")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("provisioned")
    expect(row).to_contain_text("csr")
    page.fill('#audit-filter [name="thingName"]', "demo-SN-UI-0001")
    page.select_option('#audit-filter [name="outcome"]', "provisioned")
    page.click('#audit-filter button[type="submit"]')
    expect(page.locator("#audit-table tbody tr")).to_have_count(1)
    page.fill('#audit-filter [name="thingName"]', "")
    page.select_option('#audit-filter [name="outcome"]', "")
    page.click('#audit-filter button[type="submit"]')
    screenshot("audit")


def test_admin_issues_a_key_and_sees_its_secret_once(
    page: Page, ui_service: UiService, screenshot: Callable[[str], Path]
) -> None:
    sign_in(page, ui_service)
    open_view(page, "keys")
    page.click("#key-create-panel summary")
    form = page.locator("#key-create")
    form.locator('[name="name"]').fill("factory line 1")
    form.locator('[name="templates"]').fill("demo")
    form.locator('[name="rules"]').fill("SerialNumber=^SN-[0-9]{4}$")
    form.locator('[name="serverKeys"]').uncheck()
    form.locator('[name="maxProvisions"]').fill("500")
    form.locator('[name="ratePerMinute"]').fill("60")
    page.click("#key-create-submit")

    expect(page.locator("#key-secret")).to_be_visible()
    secret = page.text_content("#key-secret-value") or ""
    assert secret.startswith("iotp_")
    page.click("#key-secret-copy")
    expect(page.locator("#key-secret-copied")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    row = page.locator("#keys-table tbody tr").filter(has_text="factory line 1")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("templates: demo; SerialNumber ~ ^SN-[0-9]{4}$; CSR only")
    expect(row).to_contain_text("0 / 500 · 60/min")
    screenshot("keys")
    page.click("#key-secret-dismiss")
    expect(page.locator("#key-secret")).to_be_hidden()
    assert page.text_content("#key-secret-value") == ""

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")


def test_admin_imports_enrollments_and_reads_the_bad_lines(
    page: Page, ui_service: UiService, screenshot: Callable[[str], Path]
) -> None:
    sign_in(page, ui_service)
    open_view(page, "enrollments")
    form = page.locator("#enrollment-import")
    form.locator('[name="template"]').fill("demo")
    bad = "SerialNumber,reprovision\nSN-0001,once\nSN-0002,sometimes\nSN-0001,once\n"
    page.set_input_files(
        "#enrollment-file", {"name": "devices.csv", "mimeType": "text/csv", "buffer": bad.encode()}
    )
    page.click("#enrollment-import-submit")
    problem = expect_problem(page, "#import-error")
    expect(problem.locator("li").filter(has_text="line 3:")).to_have_count(1)
    expect(problem.locator("li").filter(has_text="line 4:")).to_contain_text("also on line 2")
    expect(page.locator("#import-status")).to_have_text("Nothing was imported.")
    screenshot("enrollments-errors")

    good = "SerialNumber,reprovision\nSN-0001,once\nSN-0002,allow\n"
    page.set_input_files(
        "#enrollment-file", {"name": "devices.csv", "mimeType": "text/csv", "buffer": good.encode()}
    )
    page.click("#enrollment-import-submit")
    expect(page.locator("#import-status")).to_have_text("Imported: 2 added, 0 updated.")
    expect(problem).to_be_hidden()
    rows = page.locator("#enrollments-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("SN-0002")
    expect(rows.nth(1)).to_contain_text("allow")
    screenshot("enrollments")


def test_a_page_that_answers_after_the_filter_changed_is_not_added_to_the_new_list(
    page: Page, ui_service: UiService
) -> None:
    def enroll(template: str, serials: list[str]) -> None:
        response = requests.post(
            f"{ui_service.base_url}/admin/enrollments/import?template={template}",
            data="SerialNumber\n" + "".join(f"{serial}\n" for serial in serials),
            headers={"Authorization": f"Bearer {ui_service.admin_key}", "Content-Type": "text/csv"},
            timeout=10,
        )
        assert response.status_code == 200, response.text

    enroll("demo", [f"SN-{i:04d}" for i in range(101)])  # a page is 100 rows: a second page
    enroll("other", ["OTHER-1"])
    sign_in(page, ui_service)
    open_view(page, "enrollments")
    rows = page.locator("#enrollments-table tbody tr")
    expect(rows).to_have_count(100)

    def second_page(url: str) -> bool:  # a first page asks after=0
        return parse_qs(urlparse(url).query).get("after", ["0"]) != ["0"]

    held: list[Route] = []
    page.route(second_page, lambda route: held.append(route))  # answered later
    page.click("#enrollments-more")
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "More asked for no page"
        page.wait_for_timeout(50)
    # Meanwhile the operator filters another template: its one row shows ...
    page.locator('#enrollment-filter [name="template"]').fill("other")
    page.locator("#enrollment-filter").evaluate("form => form.requestSubmit()")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("OTHER-1")
    # ... and the first template's second page, answered late, is not added to it.
    with page.expect_response(lambda response: second_page(response.url)):
        held[0].continue_()
    page.wait_for_timeout(300)  # the page's handler of that answer has run
    expect(rows).to_have_count(1)
    expect(page.locator("#enrollments-more")).to_be_hidden()


def test_provision_key_gets_its_scope_and_reads_a_refusal(
    page: Page, ui_service: UiService, screenshot: Callable[[str], Path]
) -> None:
    token = issue_key(
        ui_service, role="provision", templates=["demo"], parameterRules={"SerialNumber": "^SN-[0-9]{4}$"}
    )
    sign_in(page, ui_service, token)
    expect(page.locator("#who")).to_contain_text("provision")
    # Only the provisioning view: no admin tabs for this key.
    expect(page.locator("#tabs button:visible")).to_have_count(1)
    expect(page.locator("select#template option")).to_have_text(["demo"])
    expect(page.locator(".param-name")).to_have_value("SerialNumber")
    expect(page.locator(".param-row .rule")).to_have_text("must match ^SN-[0-9]{4}$")

    page.locator(".param-value").fill("XX-1")
    page.click("#provision-submit")
    problem = expect_problem(
        page, "#provision-error", "(403)", "Rule: parameter-rule (parameter SerialNumber)"
    )
    screenshot("provision-refused")

    page.locator(".param-value").fill("SN-0042")
    page.click("#provision-submit")
    expect(page.locator("#result-thing")).to_have_text("demo-SN-0042")
    expect(problem).to_be_hidden()
    assert ui_service.emulator.registry.describe_thing("demo-SN-0042") is not None


def test_an_attempt_without_an_answer_is_sent_again_as_the_same_request(
    page: Page, ui_service: UiService
) -> None:
    ui_service.emulator.set_fault(
        "register_thing", Fault(reject=(500, "InternalFailure", "try later"), count=1)
    )
    sign_in(page, ui_service)
    page.fill("#template", "demo")
    page.locator(".param-name").fill("SerialNumber")
    page.locator(".param-value").fill("SN-RETRY")
    page.click("#provision-submit")
    problem = page.locator("#provision-error")
    expect(problem).to_contain_text("(502)")
    expect(problem).to_contain_text("AWS: InternalFailure - try later")

    page.click("#provision-submit")  # the form unchanged: the same Idempotency-Key and CSR
    expect(page.locator("#result-thing")).to_have_text("demo-SN-RETRY")
    records = requests.get(
        f"{ui_service.base_url}/admin/registrations?template=demo",
        headers={"Authorization": f"Bearer {ui_service.admin_key}"},
        timeout=10,
    ).json()["items"]
    assert [r["outcome"] for r in records] == ["provisioned", "failed"]
    assert records[0]["idempotencyKey"] is not None
    assert records[0]["idempotencyKey"] == records[1]["idempotencyKey"]


def registrations(service: UiService) -> list[dict[str, Any]]:
    response = requests.get(
        f"{service.base_url}/admin/registrations?template=demo",
        headers={"Authorization": f"Bearer {service.admin_key}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_request_still_running_is_sent_again_as_the_same_request(page: Page, ui_service: UiService) -> None:
    # The first answer is lost (the connection drops) while the service is still at work on it:
    # the next click gets 409 idempotency-in-progress, and the one after that the first's 201 replayed,
    # never a second key pair (whose identity would orphan the first's).
    ui_service.emulator.set_fault("register_thing", Fault(latency=(3, 3), count=1))
    sign_in(page, ui_service)
    page.fill("#template", "demo")
    page.locator(".param-name").fill("SerialNumber")
    page.locator(".param-value").fill("SN-BUSY")
    first: list[requests.Response] = []
    running: list[threading.Thread] = []

    def lose_the_answer(route: Route) -> None:
        # What the browser sent reaches the service; the browser only sees the connection reset.
        sent = route.request
        headers = {
            name: value
            for name, value in sent.all_headers().items()
            if name.lower() in ("authorization", "content-type", "idempotency-key")
        }

        def send() -> None:
            first.append(requests.post(sent.url, data=sent.post_data_buffer, headers=headers, timeout=30))

        thread = threading.Thread(target=send, name="first-provision")
        thread.start()
        running.append(thread)
        time.sleep(0.5)  # the service has begun (it waits 3 s on RegisterThing)
        assert thread.is_alive()
        route.abort("connectionreset")

    page.route("**/provision", lose_the_answer, times=1)
    page.click("#provision-submit")
    problem = page.locator("#provision-error")
    expect(problem).to_contain_text("could not be reached")

    page.click("#provision-submit")  # the first is still running
    expect(problem).to_contain_text("(409)")
    expect(page.locator("#provision-status")).to_contain_text(
        "press Provision again to retry the same request"
    )
    assert running[0].is_alive(), "the second click came after the first request finished"
    running[0].join(timeout=30)
    assert [response.status_code for response in first] == [201]

    page.click("#provision-submit")  # the same key pair, CSR and Idempotency-Key: the first's answer
    expect(page.locator("#result-thing")).to_have_text("demo-SN-BUSY")
    expect(page.locator("#result-detail")).to_contain_text("the service replayed its first answer")
    expect(problem).to_be_hidden()

    records = registrations(ui_service)
    assert sorted(r["outcome"] for r in records) == ["provisioned", "refused", "replayed"]
    assert len({r["idempotencyKey"] for r in records}) == 1
    assert records[0]["idempotencyKey"] is not None
    registry = ui_service.emulator.registry
    assert [thing["thingName"] for thing in registry.list_things()] == ["demo-SN-BUSY"]
    issued = [c["certificateId"] for c in registry.list_certificates() if c["owner"] == "fleet-provisioning"]
    assert issued == [first[0].json()["certificateId"]]
    thing = registry.describe_thing("demo-SN-BUSY")
    assert thing is not None
    assert thing["principals"] == issued


def test_a_rate_limited_attempt_keeps_its_idempotency_key(page: Page, ui_service: UiService) -> None:
    token = issue_key(ui_service, role="provision", templates=["demo"], ratePerMinute=1)
    left_in_minute = 60 - time.time() % 60
    if left_in_minute < 15:  # the three clicks in one rate window
        time.sleep(left_in_minute + 0.2)
    ui_service.emulator.set_fault(
        "register_thing", Fault(reject=(500, "InternalFailure", "try later"), count=1)
    )
    sign_in(page, ui_service, token)
    page.locator(".param-name").fill("SerialNumber")
    page.locator(".param-value").fill("SN-RATE")
    page.click("#provision-submit")
    problem = page.locator("#provision-error")
    expect(problem).to_contain_text("(502)")

    for attempt in (2, 3):
        page.click("#provision-submit")
        expect(problem).to_contain_text("(429)")
        expect(page.locator("#provision-status")).to_contain_text("Rate limited")
        expect(page.locator("#provision-status")).to_contain_text("retry the same request")
        assert len(registrations(ui_service)) == attempt

    records = registrations(ui_service)
    assert sorted(r["outcome"] for r in records) == ["failed", "refused", "refused"]
    assert len({r["idempotencyKey"] for r in records}) == 1
    assert records[0]["idempotencyKey"] is not None
    assert ui_service.emulator.registry.list_things() == []


def test_the_key_stays_in_the_tab_until_sign_out(page: Page, ui_service: UiService) -> None:
    page.goto(ui_service.page_url)
    page.fill("#api-key", "iotp_nosuchkey_0123456789abcdef")
    page.click("#sign-in-submit")
    expect(page.locator("#sign-in-error")).to_contain_text("(401)")
    assert page.evaluate("sessionStorage.length") == 0

    sign_in(page, ui_service)
    page.reload()  # the same tab: still signed in
    expect(page.locator("#who")).to_have_text("bootstrap-1 · admin")
    page.click("#sign-out")
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#tabs")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    expect(page.locator("#sign-in")).to_be_visible()


def test_health_shows_the_pool_to_an_admin(
    page: Page, ui_service: UiService, screenshot: Callable[[str], Path]
) -> None:
    sign_in(page, ui_service)
    open_view(page, "health")
    expect(page.locator("#health-detail")).to_contain_text("ready")
    expect(page.locator("#health-detail table tbody tr")).to_have_count(2)  # PROVISIONER_POOL_SIZE
    screenshot("health")
