"""A real browser for tests: Playwright driving Debian's Chromium (no browser download, ever), and
what a test expects a page to show.

`.ci/run` installs the `chromium` package. Missing: with CI=true the browser tests fail, elsewhere
they are skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUM_MISSING = f"{CHROMIUM} not found (apt-get install chromium)"


def require_chromium() -> None:
    """Fail (CI=true) or skip the test when Debian's Chromium is not installed."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            f"{CHROMIUM_MISSING}; CI=true, so the browser tests fail instead of skipping", pytrace=False
        )
    pytest.skip(CHROMIUM_MISSING)


@contextmanager
def chromium() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def expect_problem(page: Page, box: str, *texts: str) -> Locator:
    """The problem box `box` (a selector) of a refused form shown, with each of `texts` in it."""
    problem = page.locator(box)
    expect(problem).to_be_visible()
    for text in texts:
        expect(problem).to_contain_text(text)
    return problem
