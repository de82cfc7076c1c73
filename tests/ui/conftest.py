"""Fixtures of the browser tests: Debian's Chromium driven by Playwright for Python, one page per
test that may talk to the API under test only (any other request is aborted and reported).

Playwright cannot download its own browsers here, so it is pointed at the system Chromium
(`make test` installs it with apt-get when missing; TRACESTREAM_CHROMIUM names another binary).
Without Playwright or Chromium the tests are skipped on a developer's machine and fail when
CI=true, as the server fixtures do: CI never passes by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ui.browser import Page, chromium_path


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: browser tests fail instead of skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    executable = chromium_path()
    if executable is None:
        _unavailable("no chromium on PATH (apt-get install chromium, or make test)")
    with sync_playwright() as playwright:
        # --no-sandbox: CI and the sessions run as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Any, tmp_path: Path) -> Iterator[Callable[[str], Page]]:
    """``new_page(base_url)``: a fresh browser context (no stored key) and its page."""
    contexts: list[Any] = []

    def make(base_url: str) -> Page:
        context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return Page(context.new_page(), base_url)

    yield make
    for context in contexts:
        context.close()
