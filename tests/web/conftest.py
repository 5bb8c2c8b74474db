"""Fixtures of the browser tests: one real server and one Chromium per module, a fresh browser
context (no cookies, no storage) per test."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.reliability.helpers import Server, start_server
from tests.web.browser import CHROMIUM, POLLS_TOML, SCREENSHOTS, require_chromium

Shot = Callable[[Page, str], Path]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``vote-ledger serve`` on a SQLite ledger with the browser tests' polls."""
    root = tmp_path_factory.mktemp("site")
    polls = root / "polls.toml"
    polls.write_text(POLLS_TOML, encoding="utf-8")
    server = start_server(root / "ledger.db", config=polls)
    try:
        yield server
    finally:
        assert server.stop() == 0, server.log_text()[-3000:]
        assert not re.search(r"Traceback|ERROR", server.log_text()), server.log_text()[-3000:]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    require_chromium()
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless (Playwright never downloads one here)."""
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh context: English, a desktop window."""
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], errors


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests' screenshots go: ``VOTE_LEDGER_SCREENSHOTS``, else the run's temporary folder."""
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def shot(screenshots: Path) -> Shot:
    """Save a full-page screenshot under ``name``.png; its path."""

    def take(page: Page, name: str) -> Path:
        path = screenshots / f"{name}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path

    return take
