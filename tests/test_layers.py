"""The layer contracts (pyproject.toml, checked by lint-imports) name modules one by one, so a
new module outside every layer would be checked by none: each module must be in a layer."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import tracestream

ROOT = Path(__file__).resolve().parents[1]
# Packages whose __init__ only gathers their modules' public names for users; the modules
# themselves sit in different layers.
GATHERING_PACKAGES = {"tracestream", "tracestream.indexer", "tracestream.search_api"}


def _layered_modules() -> set[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    return {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}


def test_every_module_is_in_a_layer() -> None:
    layered = _layered_modules()
    modules = [m.name for m in pkgutil.walk_packages(tracestream.__path__, "tracestream.")]

    def in_a_layer(name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:n]) in layered for n in range(2, len(parts) + 1))

    outside = [name for name in modules if not in_a_layer(name) and name not in GATHERING_PACKAGES]
    assert len(modules) > 50
    assert outside == []
