"""Running the `tracestream` command as a user does: a process of its own, no terminal, no input."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_tracestream(
    *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``tracestream ARGS`` run to its end; ``env`` replaces the environment when given."""
    return subprocess.run(
        [sys.executable, "-m", "tracestream", *args],
        env=None if env is None else dict(env),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
