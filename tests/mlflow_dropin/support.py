"""What the drop-in tests share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tracestream.settings import Settings


@dataclass(frozen=True)
class Pipeline:
    url: str  # what MLFLOW_TRACKING_URI points at
    settings: Settings
    logs: Path

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}"
            for log in sorted(self.logs.glob("*.log"))
        )
