"""The trace fields derived from a root span, and span event values, as the SDK, the MLflow
drop-in and the stream all derive them (schemas.mlflow_format)."""

from __future__ import annotations

import json

from tracestream.schemas import SpanAttributeKey, TraceMetadataKey
from tracestream.schemas.mlflow_format import derive_from_root, event_attribute_value, trace_state

CHAT = json.dumps(
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]}
)


def test_previews_and_trace_io_come_from_the_root_spans_inputs_and_outputs() -> None:
    metadata: dict[str, str] = {}
    attributes = {SpanAttributeKey.INPUTS: CHAT, SpanAttributeKey.OUTPUTS: json.dumps("x" * 300)}

    previews = derive_from_root(attributes, metadata)

    assert previews == ("Hi?", json.dumps("x" * 300))
    assert metadata[TraceMetadataKey.INPUTS] == CHAT
    assert metadata[TraceMetadataKey.OUTPUTS] == json.dumps("x" * 300)[:247] + "..."


def test_given_previews_and_metadata_win_and_a_root_without_io_gives_empty_metadata() -> None:
    metadata = {TraceMetadataKey.INPUTS: "set by the user"}

    previews = derive_from_root({}, metadata, "request", None)

    assert previews == ("request", None)
    assert metadata == {TraceMetadataKey.INPUTS: "set by the user", TraceMetadataKey.OUTPUTS: ""}


def test_a_trace_state_is_its_root_spans_outcome() -> None:
    assert [trace_state(code) for code in ("OK", "UNSET", "ERROR")] == ["OK", "OK", "ERROR"]


def test_event_values_beyond_int64_become_text_and_the_rest_json() -> None:
    assert event_attribute_value(2**63, json.dumps) == str(2**63)
    assert event_attribute_value(-(2**63), json.dumps) == -(2**63)
    assert event_attribute_value([1, 2**64, True], json.dumps) == [1, str(2**64), True]
    assert event_attribute_value(("a", 1.5), json.dumps) == ["a", 1.5]
    assert event_attribute_value({"k": [1, {"x": None}]}, json.dumps) == '{"k": [1, {"x": null}]}'
    assert event_attribute_value(None, json.dumps) == "null"
