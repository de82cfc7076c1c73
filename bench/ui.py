"""The trace explorer in Debian's Chromium (Playwright): how long a person waits.

    .venv/bin/python bench/ui.py [--traces 100000] [--reps 30] [--spans 1000,10000]   (needs infra/up)

- Search page: from the click on Search to the rows rendered (the next animation frame after
  they are in the page), p50/p99 over bench/search.py's query mix and ``--reps`` runs each, on
  the index of ``--traces`` traces that bench/search.py builds (reused when already loaded), 50
  rows a page as the page asks.
- Trace page: a fresh navigation to a trace of 1,000 (and 10,000) spans, from the navigation's
  start to the span tree and timeline rendered, median of 5; for each, also the time from a click
  on a span to its detail shown, and from typing in the find box to the matches marked.

Prints a table, then one JSON line of the figures (units in the key names).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch

from tracestream.indexer import opensearch_client
from tracestream.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# tests/ first: its ui package (the test traces) must win over this script's own name.
sys.path.insert(0, str(ROOT / "tests"))
from search import bench_settings, count, load, queries  # noqa: E402
from searching.support import drop, private_settings, running_api, write_traces  # noqa: E402
from ui.traces import wide_trace  # noqa: E402

START_MS = 1_763_424_000_000

# In the page: submit the filter, resolve with the ms until the frame after the rows are in.
SEARCH_JS = """async (filter) => {
  const before = document.body.dataset.searched || "";
  document.querySelector("#filter").value = filter;
  const t0 = performance.now();
  document.querySelector("#search-button").click();
  await new Promise((resolve) => {
    const done = () => (document.body.dataset.searched || "") !== before;
    const check = () => (done() ? resolve() : requestAnimationFrame(check));
    check();
  });
  await new Promise((resolve) => requestAnimationFrame(resolve));
  return [performance.now() - t0, document.querySelectorAll("#traces tbody tr").length];
}"""

# From the navigation's start (performance.now() is 0 there) to the tree rendered, next frame.
TRACE_JS = """async (id) => {
  await new Promise((resolve) => {
    const done = () => document.body?.dataset.traceRendered === id;
    const check = () => (done() ? resolve() : requestAnimationFrame(check));
    check();
  });
  await new Promise((resolve) => requestAnimationFrame(resolve));
  return [performance.now(), document.querySelectorAll(".span-row").length];
}"""

# Click the middle span; then type in the find box: each timed to the next frame.
INTERACT_JS = """async () => {
  const rows = document.querySelectorAll(".span-row");
  const row = rows[Math.floor(rows.length / 2)];
  const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
  let t0 = performance.now();
  row.click();
  await new Promise((resolve) => {
    const check = () => (row.classList.contains("selected") ? resolve() : requestAnimationFrame(check));
    check();
  });
  await frame();
  const select = performance.now() - t0;
  const box = document.querySelector("#span-find");
  box.value = "step_1";
  t0 = performance.now();
  box.dispatchEvent(new Event("input"));
  await frame();
  return [select, performance.now() - t0, document.querySelectorAll(".span-row.match").length];
}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise SystemExit("no chromium on PATH: apt-get install chromium (make test installs it)")
    return path


def measure_search(browser: Any, base_url: str, reps: int) -> dict[str, Any]:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(base_url + "/")
    page.wait_for_function("Boolean(document.body.dataset.searched)")
    rows: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    for query in queries(0):
        if query.get("pages") or query.get("order_by"):
            continue  # the page's order is a URL state, and deep pages are clicks on More
        page.evaluate(SEARCH_JS, query["filter"])  # warm-up
        times = []
        for _ in range(reps):
            took, shown = page.evaluate(SEARCH_JS, query["filter"])
            times.append(took)
            counts[query["name"]] = shown
        rows[query["name"]] = times
    page.close()
    return {"times": rows, "rows": counts}


def measure_trace(browser: Any, base_url: str, trace_id: str) -> dict[str, float]:
    renders, selects, finds = [], [], []
    spans = 0
    for _ in range(5):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base_url}/?trace={trace_id}", wait_until="commit")
        took, spans = page.evaluate(TRACE_JS, trace_id)
        select, find, _matches = page.evaluate(INTERACT_JS)
        renders.append(took)
        selects.append(select)
        finds.append(find)
        page.close()
    return {
        "render_ms": statistics.median(renders),
        "select_ms": statistics.median(selects),
        "find_ms": statistics.median(finds),
        "spans": spans,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--traces", type=int, default=100_000, help="Index size (bench/search.py's index).")
    parser.add_argument("--reps", type=int, default=30, help="Timed searches per filter.")
    parser.add_argument("--spans", default="1000,10000", help="Span counts of the trace-page traces.")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    base = Settings()
    client: OpenSearch = opensearch_client(base)
    settings = bench_settings(base, args.traces)
    if count(client, settings) != args.traces:
        print(f"{args.traces:,} traces: loading (bench/search.py's index) ...", flush=True)
        load(client, settings, args.traces)
    span_counts = [int(n) for n in args.spans.split(",") if n]
    wide_settings = private_settings(Settings())
    wide = [wide_trace(START_MS + i, n, seed=i) for i, n in enumerate(span_counts)]
    for trace in wide:
        trace["trace_id"] = trace["info"]["trace_id"] = f"tr-{uuid.uuid4().hex}"
        for span in trace["spans"]:
            span["trace_id"] = trace["trace_id"]
    write_traces(client, wide_settings, wide)

    figures: dict[str, float | int] = {"search_index_traces": args.traces}
    try:
        with (
            running_api(settings) as api,
            running_api(wide_settings) as wide_api,
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            search = measure_search(browser, api.base_url, args.reps)
            traces = {
                n: measure_trace(browser, wide_api.base_url, t["trace_id"])
                for n, t in zip(span_counts, wide, strict=True)
            }
            browser.close()
    finally:
        drop(client, wide_settings)

    print(f"\nsearch page, {args.traces:,} traces, submit to rows rendered ({args.reps} runs each)")
    print(f"{'filter':<22}{'rows':>6}{'p50 ms':>10}{'p99 ms':>10}")
    everything: list[float] = []
    for name, times in search["times"].items():
        everything += times
        p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
        print(f"{name:<22}{search['rows'][name]:>6}{p50:>10.1f}{p99:>10.1f}")
    print(f"{'all':<22}{'':>6}{percentile(everything, 0.5):>10.1f}{percentile(everything, 0.99):>10.1f}")
    figures["search_rows_rendered_p50_ms"] = round(percentile(everything, 0.5), 1)
    figures["search_rows_rendered_p99_ms"] = round(percentile(everything, 0.99), 1)

    print("\ntrace page, navigation start to span tree and timeline rendered (median of 5)")
    print(f"{'spans':>7}{'render ms':>12}{'select span ms':>16}{'find spans ms':>15}")
    for n, result in traces.items():
        print(
            f"{result['spans']:>7}{result['render_ms']:>12.0f}{result['select_ms']:>16.1f}{result['find_ms']:>15.1f}"
        )
        figures[f"trace_{n}_spans_rendered_ms"] = round(result["render_ms"])
        figures[f"trace_{n}_spans_select_span_ms"] = round(result["select_ms"], 1)
        figures[f"trace_{n}_spans_find_ms"] = round(result["find_ms"], 1)
    print()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
