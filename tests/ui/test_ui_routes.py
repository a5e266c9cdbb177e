"""What /ui/ serves, over HTTP without a browser: the page under a strict CSP, its files, the CA."""

from __future__ import annotations

import re

import requests
from ui_service import UiService

from service.ui import CONTENT_SECURITY_POLICY


def test_the_page_is_served_under_a_content_security_policy(ui_service: UiService) -> None:
    response = requests.get(ui_service.page_url, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    policy = response.headers["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    # No inline script and nothing from another origin: every script has a relative src.
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", response.text, re.S)
    assert scripts and all('src="static/' in attributes and not body.strip() for attributes, body in scripts)
    assert "http" not in "".join(attributes for attributes, _ in scripts)


def test_the_page_redirects_to_its_slash(ui_service: UiService) -> None:
    response = requests.get(f"{ui_service.base_url}/ui", timeout=10, allow_redirects=False)
    assert response.status_code == 308
    assert response.headers["Location"].endswith("/ui/")


def test_scripts_and_vendored_libraries_are_served_with_the_policy(ui_service: UiService) -> None:
    for path in ("js/app.js", "vendor/peculiar-x509/x509.js", "vendor/reflect-metadata/Reflect.js", "ui.css"):
        response = requests.get(f"{ui_service.page_url}static/{path}", timeout=10)
        assert response.status_code == 200, path
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    module = requests.get(f"{ui_service.page_url}static/js/app.js", timeout=10)
    assert module.headers["Content-Type"].split(";")[0] in ("text/javascript", "application/javascript")


def test_ca_pem_is_the_ca_the_service_trusts(ui_service: UiService) -> None:
    response = requests.get(f"{ui_service.page_url}ca.pem", timeout=10)
    assert response.status_code == 200
    assert response.content == ui_service.emulator.ca_path.read_bytes()
