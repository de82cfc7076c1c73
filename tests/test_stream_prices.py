"""Span cost as MLflow's server computes it (issue 21, item 4): the stream's price table and
pricing against MLflow 3.17.2's own functions, run in its environment
(tests/fixtures/model_prices/mlflow_cost_oracle.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow_oracle import run_in_mlflow

from tracestream.schemas.mlflow_format import mlflow_span_dict
from tracestream.settings import StreamSettings
from tracestream.stream.derive import assemble, size_stats
from tracestream.stream.prices import PriceError, PriceTable

ORACLE = Path(__file__).parent / "fixtures" / "model_prices" / "mlflow_cost_oracle.py"
TRACE_ID = "tr-" + "ab" * 16
USAGE = {"input_tokens": 1200, "output_tokens": 340, "total_tokens": 1540}
CACHED = {**USAGE, "cache_read_input_tokens": 800, "cache_creation_input_tokens": 300}
CACHED_1HR = {**CACHED, "cache_creation_input_tokens_above_1hr": 100}


def span(span_id: str, parent: str | None, name: str, start: int, **attributes: Any) -> dict[str, Any]:
    return {
        "trace_id": TRACE_ID,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "span_type": "LLM",
        "start_time_ns": 1_700_000_000_000_000_000 + start * 1_000_000,
        "end_time_ns": 1_700_000_000_000_000_000 + (start + 5) * 1_000_000,
        "status_code": "OK",
        "status_message": "",
        "attributes": {
            "mlflow.traceRequestId": json.dumps(TRACE_ID),
            "mlflow.spanType": json.dumps("LLM"),
            **{
                key: value if isinstance(value, str) and key.startswith("raw:") else json.dumps(value)
                for key, value in attributes.items()
            },
        },
        "events": [],
        "location": {"type": "MLFLOW_EXPERIMENT", "experiment_id": "1"},
    }


def llm(
    span_id: str, parent: str | None, start: int, model: Any, usage: Any, provider: Any = None, **more: Any
):
    attributes: dict[str, Any] = {
        "mlflow.spanInputs": {"messages": [{"role": "user", "content": "Where is my order?"}]},
        "mlflow.spanOutputs": {"choices": [{"message": {"role": "assistant", "content": "Shipped."}}]},
        "mlflow.chat.tokenUsage": usage,
        "mlflow.llm.model": model,
    }
    if provider is not None:
        attributes["mlflow.llm.provider"] = provider
    attributes.update(more)
    return span(span_id, parent, "chat", start, **attributes)


def raw(sp: dict[str, Any], key: str, text: str) -> dict[str, Any]:
    sp["attributes"][key] = text
    return sp


ROOT = "0000000000000001"


def agent(*children: dict[str, Any], **attributes: Any) -> list[dict[str, Any]]:
    return [span(ROOT, None, "agent", 0, **{"mlflow.spanInputs": {"q": "order 7?"}, **attributes}), *children]


TRACES: dict[str, list[dict[str, Any]]] = {
    "chat span with provider": agent(llm("0000000000000002", ROOT, 1, "gpt-4o-mini", USAGE, "openai")),
    "several providers and forms": agent(
        llm("0000000000000002", ROOT, 1, "gpt-4o", USAGE),
        llm("0000000000000003", ROOT, 2, "anthropic/claude-sonnet-4-5", CACHED, "Anthropic"),
        llm("0000000000000004", ROOT, 3, "claude-sonnet-4-5", CACHED_1HR),
        llm("0000000000000005", ROOT, 4, "databricks-meta-llama-3-3-70b-instruct", USAGE),
        llm("0000000000000006", ROOT, 5, "gpt-4o-mini", USAGE, "no-such-provider"),
        llm("0000000000000007", ROOT, 6, "acme-internal-1", USAGE, "acme"),
        llm("0000000000000008", ROOT, 7, "gateway:/chat", USAGE),
        llm(
            "0000000000000009", ROOT, 8, "gpt-4o", {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        ),
        llm("000000000000000b", ROOT, 10, "gpt-4o", {"output_tokens": 30}),
        llm("000000000000000c", ROOT, 11, 42, USAGE),
        llm("000000000000000d", ROOT, 12, "gpt-4o", USAGE, 7),
    ),
    "own cost is kept, null too": agent(
        llm(
            "0000000000000002",
            ROOT,
            1,
            "gpt-4o",
            USAGE,
            "openai",
            **{"mlflow.llm.cost": {"input_cost": 0.5, "output_cost": 0.25, "total_cost": 0.75}},
        ),
        llm("0000000000000003", ROOT, 2, "gpt-4o", USAGE, "openai", **{"mlflow.llm.cost": None}),
        llm("0000000000000004", ROOT, 3, "gpt-4o-mini", USAGE, "openai"),
    ),
    "an ancestor with a cost": agent(
        span(
            "0000000000000002",
            ROOT,
            "planner",
            1,
            **{"mlflow.llm.cost": {"input_cost": 0.01, "output_cost": 0.02, "total_cost": 0.03}},
        ),
        llm("0000000000000003", "0000000000000002", 2, "gpt-4o", USAGE, "openai"),
        llm("0000000000000004", "0000000000000002", 3, "gpt-4o-mini", USAGE),
        llm("0000000000000005", ROOT, 4, "gpt-4o-mini", USAGE),
    ),
    "a priced ancestor of priced spans": agent(
        llm("0000000000000002", ROOT, 1, "gpt-4o", USAGE, "openai"),
        llm("0000000000000003", "0000000000000002", 2, "gpt-4o-mini", USAGE, "openai"),
    ),
    "not JSON": agent(raw(llm("0000000000000002", ROOT, 1, "gpt-4o", USAGE), "mlflow.llm.model", "gpt-4o")),
}


@pytest.fixture(scope="module")
def mlflow_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    table = PriceTable.bundled()
    calls = []
    for provider, models in sorted(table._providers.items()):
        for model in models:
            calls.append([model, CACHED_1HR, provider])
            calls.append([f"{provider}/{model}", USAGE, None])
    payload = {
        "calls": calls,
        "traces": [[mlflow_span_dict(s) for s in spans] for spans in TRACES.values()],
    }
    answer = run_in_mlflow(ORACLE, payload, tmp_path_factory.mktemp("cost"), timeout_s=600)
    return {"calls": list(zip(calls, answer["calls"], strict=True)), "traces": answer["traces"]}


def test_every_shipped_price_prices_as_mlflows_catalog(mlflow_answers: dict[str, Any]) -> None:
    table = PriceTable.bundled()
    assert len(mlflow_answers["calls"]) > 8000
    wrong = [(call, theirs) for call, theirs in mlflow_answers["calls"] if table.span_cost(*call) != theirs]
    assert wrong == []
    assert sum(1 for _, theirs in mlflow_answers["calls"] if theirs and theirs["total_cost"] > 0) > 6000


@pytest.mark.parametrize("name", list(TRACES))
def test_span_and_trace_cost_equal_mlflows(name: str, mlflow_answers: dict[str, Any]) -> None:
    theirs = mlflow_answers["traces"][list(TRACES).index(name)]
    trace = assemble(TRACE_ID, 1, TRACES[name], None)
    ours = {s["span_id"]: s["attributes"].get("mlflow.llm.cost") for s in trace["spans"]}
    assert ours == theirs["costs"]
    trace_cost = trace["info"]["metadata"].get("mlflow.trace.cost")
    assert (None if trace_cost is None else json.loads(trace_cost)) == theirs["trace_cost"]


def test_the_cases_say_something(mlflow_answers: dict[str, Any]) -> None:
    theirs = dict(zip(TRACES, mlflow_answers["traces"], strict=True))
    assert theirs["chat span with provider"]["costs"]["0000000000000002"] is not None
    ancestor = theirs["an ancestor with a cost"]
    assert ancestor["costs"]["0000000000000003"] is not None
    assert ancestor["trace_cost"]["total_cost"] > 0.03  # the planner and the root's own child
    assert theirs["own cost is kept, null too"]["costs"]["0000000000000003"] == "null"
    several = theirs["several providers and forms"]["costs"]
    assert several["0000000000000007"] is None and several["0000000000000008"] is None
    assert several["0000000000000003"] is not None and several["0000000000000005"] is not None


def test_a_priced_span_is_added_after_the_sizes_and_other_spans_are_untouched() -> None:
    spans = TRACES["own cost is kept, null too"]
    trace = assemble(TRACE_ID, 1, spans, None)
    assert trace["spans"][:3] == spans[:3]  # the root and the spans with a cost: the same objects
    assert "mlflow.llm.cost" in trace["spans"][3]["attributes"]
    assert "mlflow.llm.cost" not in spans[3]["attributes"]
    # MLflow's client measures sizes before its server adds costs.
    assert (
        trace["info"]["metadata"]["mlflow.trace.sizeBytes"]
        == size_stats(
            spans,
            {
                **trace["info"],
                "metadata": {
                    k: v
                    for k, v in trace["info"]["metadata"].items()
                    if k not in ("mlflow.trace.sizeBytes", "mlflow.trace.sizeStats", "mlflow.trace.cost")
                },
            },
        )[1]
    )


def test_prices_are_looked_up_once_per_model() -> None:
    table = PriceTable.load(None)
    table._lookup.cache_clear()
    for _ in range(100):
        assert table.span_cost("gpt-4o", USAGE, "openai") is not None
    info = table._lookup.cache_info()
    assert (info.misses, info.hits) == (1, 99)


def test_a_prices_file_adds_models_and_replaces_prices(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "providers": {
                    "openai": {"gpt-4o": {"input_per_million_tokens": 1.0, "output_per_million_tokens": 2.0}},
                    "acme": {
                        "support-llm": {"input_per_million_tokens": 0.5, "output_per_million_tokens": 1.5}
                    },
                }
            }
        )
    )
    table = PriceTable.load(str(path))
    assert table.span_cost("gpt-4o", USAGE, "openai") == {
        "input_cost": 1200 * 1e-6,
        "output_cost": 340 * 2e-6,
        "total_cost": 1200 * 1e-6 + 340 * 2e-6,
    }
    assert table.span_cost("acme/support-llm", USAGE)["total_cost"] == pytest.approx(0.0011100)
    assert table.span_cost("gpt-4o-mini", USAGE, "openai") == PriceTable.bundled().span_cost(
        "gpt-4o-mini", USAGE, "openai"
    )
    spans = agent(llm("0000000000000002", ROOT, 1, "support-llm", USAGE, "acme"))
    cost = json.loads(
        assemble(TRACE_ID, 1, spans, None, prices=table)["info"]["metadata"]["mlflow.trace.cost"]
    )
    assert cost["total_cost"] == pytest.approx(0.00111)
    assert "mlflow.trace.cost" not in assemble(TRACE_ID, 1, spans, None)["info"]["metadata"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not JSON"),
        ('{"openai": {}}', "expected"),
        ('{"providers": {"openai": {"m": {"input_per_token": 1}}}}', "unknown keys"),
        ('{"providers": {"openai": {"m": {"input_per_million_tokens": -1}}}}', "must be a number"),
        ('{"providers": {"openai": ["m"]}}', "expected an object of models"),
    ],
)
def test_a_bad_prices_file_is_refused_with_the_reason(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(text)
    with pytest.raises(PriceError, match=fragment):
        PriceTable.load(str(path))
    with pytest.raises(PriceError, match="No such file"):
        PriceTable.load(str(tmp_path / "missing.json"))


def test_the_setting_defaults_to_the_shipped_table() -> None:
    assert StreamSettings().model_prices_file is None
