"""The OpenAPI pages work without internet access: /docs and /redoc load Swagger UI and ReDoc
from the package, not from a CDN."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from searching.support import private_settings, running_api

from tracestream.search_api.api import create_app
from tracestream.settings import Settings
from ui.browser import Page

# What a page loads: the scripts, stylesheets and icons (not its links to other pages).
ASSET = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)\"""")


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    # No server is needed: the pages and assets are static, the schema is generated.
    with TestClient(create_app(Settings())) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def api_base_url() -> Iterator[str]:
    # The served process: an empty private index is enough for pages that read the schema only.
    with running_api(private_settings(Settings())) as api:
        yield api.base_url


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_reference_only_assets_the_api_serves(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    assets = ASSET.findall(html.text)
    assert assets, "the page links no script or stylesheet"
    assert "cdn." not in html.text and "fonts.googleapis" not in html.text
    for asset in assets:
        assert asset.startswith("/static/vendor/"), asset
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 500, asset


def test_explorer_page_and_its_files_are_served(client: TestClient) -> None:
    html = client.get("/")
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assets = ASSET.findall(html.text)
    assert "static/explorer.js" in html.text and "static/explorer.css" in assets
    for asset in assets:
        # Relative, so the page also works behind a proxy that serves the API under a path.
        assert asset.startswith("static/"), asset
        assert client.get("/" + asset).status_code == 200, asset


def test_swagger_ui_renders_the_operations_with_every_other_host_blocked(
    new_page: Callable[[str], Page], api_base_url: str
) -> None:
    page = new_page(api_base_url)
    browser_page = page.open("/docs")
    browser_page.locator(".opblock-summary-path", has_text="/api/v1/traces/search").first.wait_for()
    assert browser_page.locator(".opblock").count() >= 3
    assert page.foreign == []


def test_redoc_renders_with_every_other_host_blocked(
    new_page: Callable[[str], Page], api_base_url: str
) -> None:
    page = new_page(api_base_url)
    browser_page = page.open("/redoc")
    browser_page.wait_for_selector("text=Search traces with MLflow")
    assert page.foreign == []
