"""Consoles for output a person reads, at the terminal or piped into `cat`, `less` or a file."""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console

# Wide enough for the widest table (`traces search` with both previews: about 215 columns).
# Piped output has no terminal to fit, and rich's 80-column fallback would drop whole columns.
PIPED_WIDTH = 220


def output_console(**kwargs: Any) -> Console:
    """A rich Console that fits the terminal, or, when its stream is not a terminal and COLUMNS
    is not set, is :data:`PIPED_WIDTH` columns wide."""
    console = Console(**kwargs)
    if not console.is_terminal and "width" not in kwargs and not os.environ.get("COLUMNS", "").isdigit():
        # Width and height both: with only a width, rich still answers 80 columns for TERM=dumb.
        console.size = (PIPED_WIDTH, console.height)
    return console
