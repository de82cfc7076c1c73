"""The trace explorer in a real browser (Debian's chromium through Playwright), over a real API
process and traces written through the indexer's document path: what a person sees."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from opensearchpy import OpenSearch
from searching.support import ApiProcess, drop, private_settings, running_api, small_traces, write_traces

from tracestream.schemas.records import CompletedTrace
from tracestream.search_api.access import Right
from tracestream.search_api.keys import KeysFile
from tracestream.settings import Settings
from ui.browser import Page
from ui.traces import HTML_OUTPUT, designed_trace

START_MS = 1_763_800_000_000  # 2025-11-22
PROD, STAGING, RECENT = 8, 5, 3
DESIGNED_ID = "tr-0000000000000000000000000000ab19"


@pytest.fixture(scope="module")
def settings(opensearch: OpenSearch) -> Iterator[Settings]:
    """A private index prefix for this module's traces, dropped after it."""
    settings = private_settings(Settings())
    yield settings
    drop(opensearch, settings)


@pytest.fixture(scope="module")
def traces(opensearch: OpenSearch, settings: Settings) -> list[CompletedTrace]:
    now_ms = int(time.time() * 1000)
    written = small_traces(PROD, seed=21, start_ms=START_MS, error=False, tags={"env": "prod"})
    written += small_traces(STAGING, seed=22, start_ms=START_MS + 300, error=True, tags={"env": "staging"})
    # Within the last 15 minutes: what the quick time range finds.
    written += small_traces(RECENT, seed=23, start_ms=now_ms - 5 * 60_000, tags={"env": "recent"})
    written.append(designed_trace(START_MS + 40_000))
    write_traces(opensearch, settings, written)
    return written


@pytest.fixture(scope="module")
def api(settings: Settings, traces: list[CompletedTrace]) -> Iterator[ApiProcess]:
    with running_api(settings) as process:
        yield process


@pytest.fixture
def page(new_page: Callable[[str], Page], api: ApiProcess) -> Iterator[Page]:
    opened = new_page(api.base_url)
    yield opened
    assert opened.foreign == [], "the page asked another host"
    assert opened.console_errors == [], "the page logged errors"


def _ids(traces: list[CompletedTrace], env: str) -> set[str]:
    return {t["trace_id"] for t in traces if t["info"]["tags"].get("env") == env}


def search_for(page: Page, filter_text: str) -> Any:
    browser = page.page
    before = browser.evaluate("document.body.dataset.searched || ''")
    browser.fill("#filter", filter_text)
    browser.click("#search-button")
    browser.wait_for_function(
        "(before) => (document.body.dataset.searched || '') !== before"
        " || !document.querySelector('#filter-error').hidden",
        arg=before,
    )
    return browser


def row_ids(browser: Any) -> list[str]:
    return browser.eval_on_selector_all("#traces tbody tr", "rows => rows.map(r => r.dataset.traceId)")


def wait_searched(browser: Any) -> None:
    browser.wait_for_function("Boolean(document.body.dataset.searched)")


# ---------------------------------------------------------------- search page


def test_filter_returns_the_matching_rows_with_mlflows_columns(
    page: Page, traces: list[CompletedTrace], tmp_path: Path
) -> None:
    browser = page.open("/")
    wait_searched(browser)
    assert len(row_ids(browser)) == len(traces)
    browser.screenshot(path=str(tmp_path / "search.png"), full_page=True)

    search_for(page, "tags.env = 'staging'")
    assert set(row_ids(browser)) == _ids(traces, "staging")
    assert len(row_ids(browser)) == STAGING

    # The whole language: OR, NOT and parentheses.
    search_for(page, "(tags.env = 'staging' OR tags.env = 'designed') AND NOT status = 'OK'")
    assert set(row_ids(browser)) == _ids(traces, "staging") | {DESIGNED_ID}

    search_for(page, "span.type = 'TOOL' AND span.status = 'ERROR' AND tags.team = 'care'")
    assert row_ids(browser) == [DESIGNED_ID]
    headers = browser.eval_on_selector_all("#traces thead th", "ths => ths.map(t => t.textContent)")
    assert headers == [
        "Trace ID",
        "Request",
        "Response",
        "State",
        "Request time",
        "Execution time",
        "Trace name",
        "User",
        "Session",
        "Tokens",
        "Tags",
    ]
    cells = browser.eval_on_selector_all(
        "#traces tbody tr:first-child td", "tds => tds.map(t => t.innerText)"
    )
    assert cells[0] == DESIGNED_ID
    assert cells[1:4] == ["where is order A1?", "sorry", "ERROR"]
    assert cells[5:10] == ["900 ms", "agent_turn", "user-ui", "session-ui", "150"]
    assert "env=designed" in cells[10] and "team=care" in cells[10]


def test_an_invalid_filter_shows_the_message_and_a_caret_under_the_offending_token(page: Page) -> None:
    browser = page.open("/")
    wait_searched(browser)
    text = "tags.env = 'prod' AND span.type == 'TOOL'"
    search_for(page, text)
    error = browser.locator("#filter-error")
    assert error.is_visible()
    assert "span.type comparator '==' not one of" in error.locator(".message").inner_text()
    line, caret = error.locator(".highlight").text_content().split("\n")
    assert line == text
    assert caret.index("^") == text.index("==") and caret.strip() == "^^"
    assert browser.url.startswith(page.base_url)  # still on the page

    # With a quick time range the API gets a longer filter; the caret stays under the user's text.
    browser.select_option("#time-range", "24h")
    browser.wait_for_function("document.querySelector('#filter-error .highlight').textContent.length > 0")
    browser.wait_for_function("new URLSearchParams(location.search).get('range') === '24h'")
    line, caret = error.locator(".highlight").text_content().split("\n")
    assert line == text
    assert caret.index("^") == text.index("==")


def test_the_experiment_box_limits_the_search_to_its_experiments(page: Page) -> None:
    browser = page.open("/")
    wait_searched(browser)
    # The experiments seen so far are offered.
    offered = browser.eval_on_selector_all("#known-locations option", "os => os.map(o => o.value)")
    assert offered == ["0", "7"]
    before = browser.evaluate("document.body.dataset.searched")
    browser.fill("#locations", "7")
    browser.click("#search-button")
    browser.wait_for_function("(b) => document.body.dataset.searched !== b", arg=before)
    assert row_ids(browser) == [DESIGNED_ID]
    assert parse_qs(urlparse(browser.url).query)["locations"] == ["7"]


def test_quick_time_range_adds_a_timestamp_clause(page: Page, traces: list[CompletedTrace]) -> None:
    browser = page.open("/")
    wait_searched(browser)
    before = browser.evaluate("document.body.dataset.searched")
    browser.select_option("#time-range", "15m")
    browser.wait_for_function("(b) => document.body.dataset.searched !== b", arg=before)
    assert set(row_ids(browser)) == _ids(traces, "recent")


def test_sorting_by_a_column_changes_the_order(page: Page, traces: list[CompletedTrace]) -> None:
    browser = page.open("/")
    wait_searched(browser)
    default = row_ids(browser)

    def sorted_by(header: str) -> list[str]:
        before = browser.evaluate("document.body.dataset.searched")
        browser.click(f"#traces th:text-is('{header}')")
        browser.wait_for_function("(b) => document.body.dataset.searched !== b", arg=before)
        return row_ids(browser)

    by_id = {t["trace_id"]: t for t in traces}
    descending = sorted_by("Execution time")
    durations = [by_id[i]["info"]["execution_duration_ms"] for i in descending]
    assert durations == sorted(durations, reverse=True)
    assert descending != default
    assert parse_qs(urlparse(browser.url).query)["order"] == ["execution_time_ms DESC"]
    assert browser.get_attribute("#traces th:text-is('Execution time')", "aria-sort") == "descending"

    ascending = sorted_by("Execution time")
    durations = [by_id[i]["info"]["execution_duration_ms"] for i in ascending]
    assert durations == sorted(durations)

    by_name = sorted_by("Trace ID")
    assert by_name == sorted(by_id, reverse=True)


def test_more_fetches_the_next_page_and_a_link_keeps_filter_and_order(
    page: Page, traces: list[CompletedTrace]
) -> None:
    # size: rows per page (50 unless the URL says otherwise).
    browser = page.open("/?filter=tags.env%20%3D%20%27prod%27&order=timestamp_ms%20ASC&size=3")
    wait_searched(browser)
    assert browser.input_value("#filter") == "tags.env = 'prod'"
    assert browser.get_attribute("#traces th:text-is('Request time')", "aria-sort") == "ascending"
    prod = sorted(
        (t for t in traces if t["info"]["tags"]["env"] == "prod"), key=lambda t: t["info"]["request_time_ms"]
    )
    expected = [t["trace_id"] for t in prod]
    assert row_ids(browser) == expected[:3]
    while browser.locator("#more").is_visible():
        count = len(row_ids(browser))
        browser.click("#more")
        browser.wait_for_function(f"document.querySelectorAll('#traces tbody tr').length > {count}")
    assert row_ids(browser) == expected


def test_export_downloads_the_current_search_as_ndjson(page: Page, traces: list[CompletedTrace]) -> None:
    browser = page.open("/?filter=tags.env%20%3D%20%27staging%27")
    wait_searched(browser)
    with browser.expect_download() as download:
        browser.click("#export")
    lines = Path(download.value.path()).read_text().splitlines()
    assert {json.loads(line)["info"]["trace_id"] for line in lines} == _ids(traces, "staging")


# ---------------------------------------------------------------- trace page


def open_designed(page: Page) -> Any:
    browser = page.open("/?filter=tags.team%20%3D%20%27care%27")
    wait_searched(browser)
    browser.click(f"#traces tbody tr[data-trace-id='{DESIGNED_ID}'] td:nth-child(2)")
    browser.wait_for_function(f"document.body.dataset.traceRendered === '{DESIGNED_ID}'")
    return browser


def tree(browser: Any) -> list[tuple[str, int, bool]]:
    return browser.eval_on_selector_all(
        ".span-row",
        "rows => rows.map(r => [r.dataset.name, Number(r.dataset.depth), r.classList.contains('error')])",
    )


def test_trace_page_shows_the_span_tree_nested_with_the_failing_span_marked(
    page: Page, tmp_path: Path
) -> None:
    browser = open_designed(page)
    assert [tuple(row) for row in tree(browser)] == [
        ("agent_turn", 0, True),
        ("plan", 1, False),
        ("lookup_order", 1, True),
        ("db_query", 2, False),
        ("render", 1, False),
    ]
    failing = browser.locator(".span-row[data-name='lookup_order']")
    assert failing.locator(".err-mark").inner_text() == "⚠"
    assert failing.locator(".type").inner_text() == "TOOL"
    assert "t-TOOL" in failing.locator(".bar").get_attribute("class")
    # The waterfall: the bar of db_query starts inside lookup_order's and ends before it.
    boxes = {
        name: browser.locator(f".span-row[data-name='{name}'] .bar").bounding_box()
        for name in ("agent_turn", "lookup_order", "db_query")
    }
    assert boxes["agent_turn"]["x"] <= boxes["lookup_order"]["x"] < boxes["db_query"]["x"]
    assert (
        boxes["db_query"]["x"] + boxes["db_query"]["width"]
        < boxes["lookup_order"]["x"] + boxes["lookup_order"]["width"]
    )
    summary = {
        key: browser.inner_text(f"#summary [data-field='{key}']")
        for key in ("state", "duration", "spans", "tokens", "user", "session")
    }
    assert summary == {
        "state": "ERROR",
        "duration": "900 ms",
        "spans": "5",
        "tokens": "120 / 30 / 150",
        "user": "user-ui",
        "session": "session-ui",
    }
    assessments = browser.inner_text("#assessments")
    assert "helpfulness" in assessments and "did not find the order" in assessments
    assert "HUMAN reviewer-9" in assessments
    browser.click(".span-row[data-name='lookup_order']")
    browser.screenshot(path=str(tmp_path / "trace.png"), full_page=True)


def test_selecting_a_span_shows_its_inputs_and_its_exception(page: Page) -> None:
    browser = open_designed(page)
    browser.click(".span-row[data-name='plan']")
    detail = browser.locator("#span-detail")
    detail.locator("h2", has_text="plan").wait_for()
    messages = detail.locator(".inputs .message").all_inner_texts()
    assert [m.split("\n", 1)[0].lower() for m in messages] == ["system", "user"]
    assert "where is order A1?" in messages[1]
    assert "call lookup_order" in detail.locator(".outputs").inner_text()
    assert "120 / 30 / 150" in detail.inner_text()

    browser.click(".span-row[data-name='lookup_order']")
    detail.locator("h2", has_text="lookup_order").wait_for()
    exception = detail.locator(".event.exception").inner_text()
    assert "KeyError" in exception and "'A1'" in exception and 'File "tools.py", line 12' in exception
    assert "ERROR: KeyError: 'A1'" in detail.inner_text()


def test_find_spans_by_name_and_select_with_the_keyboard(page: Page) -> None:
    browser = open_designed(page)
    browser.fill("#span-find", "order")
    matches = browser.eval_on_selector_all(".span-row.match", "rows => rows.map(r => r.dataset.name)")
    assert matches == ["lookup_order"]
    browser.press("#span-find", "Enter")
    browser.locator("#span-detail h2", has_text="lookup_order").wait_for()

    # The keyboard: from the selected row down one, Enter selects it.
    browser.focus(".span-row[data-name='lookup_order']")
    browser.keyboard.press("ArrowDown")
    browser.keyboard.press("Enter")
    browser.locator("#span-detail h2", has_text="db_query").wait_for()


def test_a_deep_link_reopens_the_trace_and_the_span(page: Page, new_page: Callable[[str], Page]) -> None:
    browser = open_designed(page)
    browser.click(".span-row[data-name='db_query']")
    browser.locator("#span-detail h2", has_text="db_query").wait_for()
    link = browser.url
    assert parse_qs(urlparse(link).query)["trace"] == [DESIGNED_ID]

    again = new_page(page.base_url)
    reopened = again.page
    reopened.goto(link)
    reopened.wait_for_function(f"document.body.dataset.traceRendered === '{DESIGNED_ID}'")
    assert reopened.locator(".span-row.selected").get_attribute("data-name") == "db_query"
    assert "select * from orders" in reopened.inner_text("#span-detail .inputs")
    # Back goes to the search the link came from.
    reopened.click("#back")
    wait_searched(reopened)
    assert reopened.input_value("#filter") == "tags.team = 'care'"
    assert row_ids(reopened) == [DESIGNED_ID]


def test_html_in_an_output_is_shown_as_text(page: Page) -> None:
    browser = open_designed(page)
    browser.click(".span-row[data-name='render']")
    outputs = browser.locator("#span-detail .outputs")
    outputs.wait_for()
    assert HTML_OUTPUT in outputs.inner_text()
    assert browser.evaluate("window.__injected") is None
    assert browser.locator("#injected").count() == 0
    assert outputs.locator("script, img, b").count() == 0


# ---------------------------------------------------------------- API keys


@pytest.fixture(scope="module")
def keyed_api(opensearch: OpenSearch, traces: list[CompletedTrace]) -> Iterator[ApiProcess]:
    settings = private_settings(Settings())
    write_traces(opensearch, settings, traces[:4])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRACESTREAM_API__API_KEYS", "ui-key-1,ui-key-2")
        with running_api(settings) as process:
            yield process
    drop(opensearch, settings)


def test_with_api_keys_only_the_login_prompt_shows_until_a_key_works(
    new_page: Callable[[str], Page], keyed_api: ApiProcess, traces: list[CompletedTrace]
) -> None:
    page = new_page(keyed_api.base_url)
    browser = page.open("/?filter=tags.env%20%3D%20%27prod%27")
    browser.locator("#login").wait_for()
    assert browser.locator("#app").is_hidden()
    assert browser.locator("#traces tbody tr").count() == 0
    assert browser.locator("#span-tree .span-row").count() == 0

    browser.fill("#api-key", "wrong")
    browser.click("#login-form button")
    browser.wait_for_function("document.querySelector('#login-error').textContent.includes('refused')")
    assert browser.locator("#app").is_hidden()

    browser.fill("#api-key", "ui-key-2")
    browser.click("#login-form button")
    wait_searched(browser)
    assert browser.locator("#login").is_hidden()
    expected = {t["trace_id"] for t in traces[:4] if t["info"]["tags"]["env"] == "prod"}
    assert set(row_ids(browser)) == expected

    # The key goes with the trace page's request too.
    browser.click("#traces tbody tr:first-child td:nth-child(2)")
    browser.wait_for_function("Boolean(document.body.dataset.traceRendered)")
    assert browser.locator(".span-row").count() >= 2
    assert re.search(r"trace=tr-", browser.url)


@pytest.fixture(scope="module")
def scoped_api(
    opensearch: OpenSearch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApiProcess, list[CompletedTrace], str]]:
    """An API whose keys file holds one key that may read experiment "31" only, beside traces of
    experiments 31 and 32."""
    settings = private_settings(Settings())
    written = small_traces(4, seed=31, start_ms=START_MS, experiment_id="31")
    written += small_traces(4, seed=32, start_ms=START_MS + 500, experiment_id="32")  # newer
    write_traces(opensearch, settings, written)
    keys_file = tmp_path_factory.mktemp("keys") / "keys.json"
    _, secret = KeysFile(keys_file).create("support-dashboard", ["31"], [Right.READ])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRACESTREAM_API__KEYS_FILE", str(keys_file))
        with running_api(settings) as process:
            yield process, written, secret
    drop(opensearch, settings)


def test_with_a_scoped_key_the_page_shows_only_its_experiments_traces(
    new_page: Callable[[str], Page], scoped_api: tuple[ApiProcess, list[CompletedTrace], str]
) -> None:
    api, written, secret = scoped_api
    readable = {t["trace_id"] for t in written if t["info"]["location"]["experiment_id"] == "31"}
    other = next(t["trace_id"] for t in written if t["info"]["location"]["experiment_id"] == "32")
    page = new_page(api.base_url)
    browser = page.open("/")
    browser.locator("#login").wait_for()
    browser.fill("#api-key", secret)
    browser.click("#login-form button")
    wait_searched(browser)

    assert set(row_ids(browser)) == readable
    # A deep link to a trace of the other experiment finds nothing, as an unknown id does.
    browser = page.open(f"/?trace={other}")
    browser.wait_for_function(
        "document.querySelector('#trace-error').textContent.includes('RESOURCE_DOES_NOT_EXIST')"
    )
    assert browser.locator(".span-row").count() == 0
