"""`make bench`: every benchmark of bench/, one after the other, then one table of all figures.

    .venv/bin/python bench/run_all.py [--search-sizes 100000] [--only sdk,stream,...]   (needs infra/up)

Each benchmark prints its own table and, as its last line, a JSON object of figures; this script
shows their output as it comes, then gathers those last lines. Its own last line is one JSON
object of every figure, keyed ``<bench>.<figure>``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def benchmarks(search_sizes: str) -> dict[str, list[str]]:
    return {
        "stack_start": ["stack_start.py"],
        "sdk": ["sdk.py"],
        "stream": ["stream.py"],
        "index": ["index.py"],
        "dsl": ["dsl.py"],
        "search": ["search.py", "--sizes", search_sizes],
        "e2e": ["e2e.py"],
        # The same pipeline at a rate this 2-core machine sustains with everything colocated.
        "e2e_2k": ["e2e.py", "--spans-per-s", "2000", "--seconds", "60", "--mlflow-traces", "0"],
        "predicate": ["predicate.py"],
        "session_assessments": ["session_assessments.py"],
        "alerts": ["alerts.py"],
        "alerts_e2e": ["alerts_e2e.py"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--search-sizes", default="100000", help="Index sizes for bench/search.py.")
    parser.add_argument("--only", default="", help="Comma-separated subset of: " + ", ".join(benchmarks("")))
    args = parser.parse_args()
    chosen = benchmarks(args.search_sizes)
    if args.only:
        chosen = {name: argv for name, argv in chosen.items() if name in args.only.split(",")}

    figures: dict[str, object] = {}
    failed: list[str] = []
    for name, (script, *options) in chosen.items():
        print(f"\n=== bench/{script} {' '.join(options)}", flush=True)
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, str(BENCH / script), *options],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        last = ""
        for line in process.stdout or []:
            print(line, end="", flush=True)
            if line.strip():
                last = line.strip()
        process.wait()
        took = time.monotonic() - started
        try:
            result = json.loads(last)
        except ValueError:
            result = None
        if process.returncode != 0 or not isinstance(result, dict):
            failed.append(name)
            continue
        figures.update({f"{name}.{key}": value for key, value in result.items()})
        figures[f"{name}.bench_s"] = round(took)

    print("\n=== all figures")
    width = max((len(key) for key in figures), default=10) + 2
    for key, value in figures.items():
        print(f"{key:<{width}}{value}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    print(json.dumps(figures))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
