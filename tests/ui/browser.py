"""The browser side of the UI tests: where Chromium is, and a page that may reach one API only."""

from __future__ import annotations

import os
import shutil
from typing import Any


def chromium_path() -> str | None:
    return (
        os.environ.get("TRACESTREAM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )


class Page:
    """A Playwright page bound to one API base URL; requests to any other origin are aborted
    and kept in ``foreign`` so a test can assert the page needs no other host."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.foreign: list[str] = []
        self.console_errors: list[str] = []
        page.route("**/*", self._route)
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))

    def _console(self, message: Any) -> None:
        # Chromium logs each 4xx answer as a console error; the pages expect those (an invalid
        # filter is a 400, a missing key a 401). Script errors are kept.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.console_errors.append(message.text)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.base_url + "/") or url == self.base_url or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def open(self, path: str = "/") -> Any:
        self.page.goto(self.base_url + path)
        return self.page
