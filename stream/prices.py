"""Span cost from the model and token usage, as MLflow's server prices a span it stores.

MLflow 3.17's SqlAlchemy store runs ``translate_span_when_storing`` on every span: a span with
``mlflow.chat.tokenUsage`` and ``mlflow.llm.model`` but no ``mlflow.llm.cost`` (the key absent: an
explicit null is kept) gets ``mlflow.llm.cost`` = ``{"input_cost", "output_cost", "total_cost"}``
from ``calculate_cost_by_model_and_token_usage`` and, without litellm installed,
``mlflow.utils.providers.cost_per_token`` over its bundled model catalog. :meth:`PriceTable.span_cost`
is that function, step for step (the same float operations in the same order, so the same bits).

The table shipped here (model_prices.json) is MLflow 3.17.2's bundled catalog, its per-token prices
only (tests/fixtures/model_prices/make_model_prices.py writes it). A file of your own
(``TRACESTREAM_STREAM__MODEL_PRICES_FILE``, same format) adds models or replaces their prices.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

# Per-million prices as MLflow's catalog names them, in the order of a Price tuple.
PRICE_KEYS = (
    "input_per_million_tokens",
    "output_per_million_tokens",
    "cache_read_per_million_tokens",
    "cache_write_per_million_tokens",
    "cache_write_1hr_per_million_tokens",
)
# Per-token prices (per-million / 1e6, as MLflow divides), None where the catalog has none:
# input, output, cache read, cache write, cache write (1 hour).
Price = tuple[float | None, float | None, float | None, float | None, float | None]
# MLflow skips these: internal routing ids, never in the catalog.
_SKIP_PREFIXES = ("gateway:/", "endpoints:/")


class PriceError(ValueError):
    """A price file that cannot be read."""


def _price(model: str, entry: Any, where: str) -> Price:
    if not isinstance(entry, dict):
        raise PriceError(f"{where}: model {model!r}: expected an object of prices, got {entry!r}")
    unknown = set(entry) - set(PRICE_KEYS)
    if unknown:
        raise PriceError(
            f"{where}: model {model!r}: unknown keys {sorted(unknown)} (known: {list(PRICE_KEYS)})"
        )
    values = []
    for key in PRICE_KEYS:
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise PriceError(f"{where}: model {model!r}: {key} must be a number >= 0, got {value!r}")
        values.append(None if value is None else value / 1_000_000)
    return tuple(values)  # type: ignore[return-value]


def read_prices(text: str, where: str) -> dict[str, dict[str, Price]]:
    """A price file: ``{"providers": {provider: {model: {<PRICE_KEYS>: per-million USD}}}}``."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise PriceError(f"{where}: not JSON: {exc}") from None
    providers = document.get("providers") if isinstance(document, dict) else None
    if not isinstance(providers, dict):
        raise PriceError(f'{where}: expected {{"providers": {{provider: {{model: prices}}}}}}')
    table: dict[str, dict[str, Price]] = {}
    for provider, models in providers.items():
        if not isinstance(models, dict):
            raise PriceError(f"{where}: provider {provider!r}: expected an object of models")
        table[provider] = {model: _price(model, entry, where) for model, entry in models.items()}
    return table


class PriceTable:
    """Prices by provider and model, and MLflow's cost of a span. Lookups are cached per
    (model, provider), so pricing a span costs two dict lookups and a few multiplications."""

    def __init__(self, providers: dict[str, dict[str, Price]]) -> None:
        self._providers = providers
        # MLflow's lookup without a provider scans the providers in name order and takes the
        # first that has the model with a (non-zero) input price, else the first that has it.
        self._any: dict[str, Price] = {}
        for name in sorted(providers):
            for model, price in providers[name].items():
                chosen = self._any.get(model)
                if chosen is None or (not chosen[0] and price[0]):
                    self._any[model] = price
        self._lookup = lru_cache(maxsize=4096)(self._find)

    @classmethod
    def bundled(cls) -> PriceTable:
        return _bundled()

    @classmethod
    def load(cls, path: str | None) -> PriceTable:
        """The shipped table, with ``path``'s models added or replacing shipped ones."""
        if not path:
            return _bundled()
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise PriceError(f"model prices file {path}: {exc}") from None
        merged = {provider: dict(models) for provider, models in _bundled_prices().items()}
        for provider, models in read_prices(text, path).items():
            merged.setdefault(provider, {}).update(models)
        return cls(merged)

    def _find(self, model: str, provider: Any) -> tuple[Price | None, Price | None]:
        """The price MLflow would try with the provider, and the one it falls back on."""
        bare = model.split("/", 1)[-1]
        with_provider = None
        # MLflow calls provider.lower(); anything but a string fails that call, which it swallows
        # before trying without the provider.
        if provider and isinstance(provider, str):
            with_provider = self._providers.get(provider.lower(), {}).get(bare)
        return with_provider, self._any.get(bare)

    def span_cost(self, model: Any, usage: Any, provider: Any = None) -> dict[str, float] | None:
        """MLflow's ``calculate_cost_by_model_and_token_usage`` (builtin ``cost_per_token``);
        None where MLflow sets no cost (anything it would fail on included)."""
        if not model or not usage:
            return None
        if not isinstance(model, str) or not isinstance(usage, dict):
            return None
        if model.startswith(_SKIP_PREFIXES):
            return None
        if not provider and model.startswith(("databricks-", "databricks/")):
            provider = "databricks"
        prompt = usage.get("input_tokens", 0)
        completion = usage.get("output_tokens", 0)
        if prompt == 0 and completion == 0:
            return None
        cache_read = usage.get("cache_read_input_tokens")
        cache_creation = usage.get("cache_creation_input_tokens")
        above_1hr = usage.get("cache_creation_input_tokens_above_1hr")
        try:
            first, fallback = self._lookup(model, provider)
        except TypeError:  # an unhashable provider: MLflow's provider call fails, it falls back
            first, fallback = self._lookup(model, None)
        result = None
        for price in (first, fallback):
            if price is None:
                continue
            try:
                result = _cost(price, prompt, completion, cache_read, cache_creation, above_1hr)
            except (TypeError, ValueError):  # MLflow swallows these and tries the next lookup
                continue
            break
        if result is None:
            return None
        input_cost, output_cost = result
        return {"input_cost": input_cost, "output_cost": output_cost, "total_cost": input_cost + output_cost}


def _cost(
    price: Price, prompt: Any, completion: Any, cache_read: Any, cache_creation: Any, above_1hr: Any
) -> tuple[float, float]:
    """``mlflow.utils.providers.cost_per_token`` once the model's info is found."""
    input_rate = 0.0 if price[0] is None else price[0]
    output_rate = 0.0 if price[1] is None else price[1]
    cache_read = cache_read or 0
    cache_creation = cache_creation or 0
    regular = max(prompt - cache_read - cache_creation, 0)
    creation_1hr = min(above_1hr or 0, cache_creation)
    creation_5m = cache_creation - creation_1hr
    creation_rate = input_rate if price[3] is None else price[3]
    input_cost = regular * input_rate
    if cache_read > 0:
        input_cost += cache_read * (input_rate if price[2] is None else price[2])
    if creation_5m > 0:
        input_cost += creation_5m * creation_rate
    if creation_1hr > 0:
        input_cost += creation_1hr * (creation_rate if price[4] is None else price[4])
    output_cost = completion * output_rate
    return input_cost, output_cost


@lru_cache(maxsize=1)
def _bundled_prices() -> dict[str, dict[str, Price]]:
    text = resources.files(__package__).joinpath("model_prices.json").read_text(encoding="utf-8")
    return read_prices(text, "model_prices.json")


@lru_cache(maxsize=1)
def _bundled() -> PriceTable:
    return PriceTable(_bundled_prices())
