"""The operator page in a real browser, against the real service app on the real emulator.

Fixtures
    browser         Debian's Chromium driven by Playwright (session; fails under CI=true when
                    missing, else skips)
    ui_service      the service app in a thread (tests/support/ui_service.py) on the shared emulator,
                    its SQLite store in tmp_path, ready; `ui_service.admin_key` is a bootstrap admin key
    page            a fresh browser context and page (1200x800, downloads accepted, clipboard
                    allowed); console errors and page errors (a CSP violation is one) fail the test
    screenshot      screenshot(name): the page as PNG into $UI_SCREENSHOT_DIR (the README's pictures:
                    `UI_SCREENSHOT_DIR=docs/screenshots`), else into tmp_path
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser import chromium
from playwright.sync_api import Browser, ConsoleMessage, Page
from repository import REPO_ROOT
from ui_service import UiService, serve_ui

from emulator import Emulator


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def ui_service(emulator: Emulator, tmp_path: Path) -> Iterator[UiService]:
    with serve_ui(emulator, tmp_path) as service:
        yield service


@pytest.fixture
def page(browser: Browser, ui_service: UiService) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1200, "height": 800},
        accept_downloads=True,
        permissions=["clipboard-read", "clipboard-write"],
    )
    context.set_default_timeout(15_000)
    opened = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # The browser logs failed fetches (401, 422: answers the page shows) as errors; a CSP
        # violation or a script error is what must not happen.
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(message.text)

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    yield opened
    context.close()
    assert not problems, f"the page logged errors: {problems}"


@pytest.fixture
def screenshot(page: Page, tmp_path: Path) -> Callable[[str], Path]:
    directory = Path(os.environ.get("UI_SCREENSHOT_DIR") or tmp_path)
    if not directory.is_absolute():
        directory = REPO_ROOT / directory
    directory.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = directory / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    return take
