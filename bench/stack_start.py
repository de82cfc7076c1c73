"""How long the local stack takes to start: cold (fresh data dirs) and warm (data kept).

Runs a private stack on other ports in a temporary directory, so a running development
stack is not touched. Downloads are assumed done (run `infra/up` once first).

    .venv/bin/python bench/stack_start.py [--runs 3]

Prints a table, then one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

INFRA = Path(__file__).resolve().parent.parent / "infra"
PORTS = {
    "TRACESTREAM_STACK_KAFKA_PORT": "29092",
    "TRACESTREAM_STACK_KAFKA_CONTROLLER_PORT": "29093",
    "TRACESTREAM_STACK_OPENSEARCH_PORT": "29200",
    "TRACESTREAM_STACK_OPENSEARCH_TRANSPORT_PORT": "29300",
}


def _infra(command: str, *args: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([str(INFRA / command), *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs

    cold: list[float] = []
    warm: list[float] = []
    down: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tracestream-bench-") as scratch:
        env = {**os.environ, **PORTS, "TRACESTREAM_STACK_DIR": scratch}
        try:
            for _ in range(runs):
                cold.append(_infra("up", env=env))
                down.append(_infra("down", env=env))
                warm.append(_infra("up", env=env))
                _infra("down", "--purge", env=env)
        finally:
            _infra("down", "--purge", env=env)

    figures = {
        "cold_up_median_s": round(statistics.median(cold), 2),
        "warm_up_median_s": round(statistics.median(warm), 2),
        "down_median_s": round(statistics.median(down), 2),
        "runs": runs,
    }
    print(f"{'infra/ step (both servers)':<34}{'median':>10}{'min':>10}{'max':>10}")
    for label, values in (("up, fresh data (cold)", cold), ("up, data kept (warm)", warm), ("down", down)):
        print(f"{label:<34}{statistics.median(values):>9.2f}s{min(values):>9.2f}s{max(values):>9.2f}s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
