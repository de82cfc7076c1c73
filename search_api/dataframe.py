"""Traces as the pandas DataFrame ``mlflow.search_traces`` returns, plus MLflow 2's column names.

The first twelve columns are MLflow 3's, in its order and with its value types. The legacy columns
after them (``request_id``, ``timestamp_ms``, ``status``, ..., one ``tags.<key>`` per tag key) let
analysis recipes written for older MLflow keep running.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, cast

import pandas as pd

from tracestream.search_api.client import INVALID_PARAMETER_VALUE, TraceSearchError
from tracestream.search_api.entities import Span, Trace

MLFLOW_COLUMNS = [
    "trace_id",
    "trace",
    "client_request_id",
    "state",
    "request_time",
    "execution_duration",
    "request",
    "response",
    "trace_metadata",
    "tags",
    "spans",
    "assessments",
]
LEGACY_COLUMNS = [
    "request_id",
    "timestamp_ms",
    "status",
    "execution_time_ms",
    "request_metadata",
    "request_preview",
    "response_preview",
]
TAG_COLUMN_PREFIX = "tags."


class ParsedField(NamedTuple):
    """One ``extract_fields`` entry: ``span_name.inputs|outputs[.field_name]``."""

    span_name: str
    field_type: Literal["inputs", "outputs"]
    field_name: str | None

    def __str__(self) -> str:
        suffix = f".{self.field_name}" if self.field_name is not None else ""
        return f"{self.span_name}.{self.field_type}{suffix}"


def _invalid(message: str) -> TraceSearchError:
    return TraceSearchError(message, INVALID_PARAMETER_VALUE)


def _read_name(text: str, start: int, original: str) -> tuple[str, int]:
    """A name at ``start``: backticked (may contain dots) or up to the next dot. Returns the name
    and the position after it."""
    if start < len(text) and text[start] == "`":
        end = text.find("`", start + 1)
        if end < 0:
            raise _invalid(f"Expected closing backtick: {original!r}")
        return text[start + 1 : end], end + 1
    end = text.find(".", start)
    end = len(text) if end < 0 else end
    return text[start:end], end


def parse_field(spec: str) -> ParsedField:
    """One extract_fields entry, with MLflow's error messages."""
    span_name, position = _read_name(spec, 0, spec)
    if position >= len(spec) or spec[position] != ".":
        raise _invalid(f"Expected dot after span name: {spec!r}")
    dot = spec.find(".", position + 1)
    field_type = spec[position + 1 : dot if dot >= 0 else len(spec)]
    if field_type not in ("inputs", "outputs"):
        raise _invalid(f"Invalid field type: {field_type!r}. Expected 'inputs' or 'outputs'.")
    if dot < 0 or dot == len(spec) - 1:
        # "span.inputs." reads as "span.inputs" in MLflow: the trailing dot is consumed.
        return ParsedField(span_name, cast(Literal["inputs", "outputs"], field_type), None)
    rest = dot + 1
    if spec[rest] == "`":
        field_name, end = _read_name(spec, rest, spec)
        if end != len(spec):
            raise _invalid(f"Unexpected characters after closing backtick: {spec!r}")
    else:
        field_name = spec[rest:]
    return ParsedField(span_name, cast(Literal["inputs", "outputs"], field_type), field_name)


def parse_fields(specs: list[str]) -> list[ParsedField]:
    return [parse_field(spec) for spec in specs]


def _extract(span: Span, parsed: ParsedField) -> Any:
    value = span.inputs if parsed.field_type == "inputs" else span.outputs
    if parsed.field_name is None:
        return value
    if isinstance(value, dict) and parsed.field_name in value:
        return value[parsed.field_name]
    return None


def _legacy_row(trace: Trace) -> dict[str, Any]:
    info = trace.info
    return {
        "request_id": info.request_id,
        "timestamp_ms": info.timestamp_ms,
        "status": info.status.value,
        "execution_time_ms": info.execution_time_ms,
        "request_metadata": info.request_metadata,
        "request_preview": info.request_preview,
        "response_preview": info.response_preview,
    }


def traces_to_dataframe(traces: list[Trace], extract_fields: list[str] | None = None) -> pd.DataFrame:
    """The DataFrame of ``mlflow.search_traces(return_type="pandas")`` for ``traces``, followed by
    the legacy columns. With ``extract_fields``, one column per field after MLflow's twelve, holding
    the field of the last span with exactly that name (None when no span has it)."""
    fields = parse_fields(extract_fields) if extract_fields is not None else []
    columns = [*MLFLOW_COLUMNS, *(str(f) for f in fields), *LEGACY_COLUMNS]
    rows = []
    for trace in traces:
        row = trace.to_pandas_dataframe_row()
        # pandas 3 stores str columns in pyarrow when it is installed (as it is with MLflow), which
        # turns MLflow's TraceState values into plain str; without pyarrow the enum would stay.
        # Plain str gives MLflow's types in either environment.
        row["state"] = trace.info.state.value
        for parsed in fields:
            row[str(parsed)] = None
            for span in trace.data.spans:
                if span.name == parsed.span_name:
                    row[str(parsed)] = _extract(span, parsed)
        row.update(_legacy_row(trace))
        rows.append(row)
    # Built the way MLflow builds it, so pandas infers the same dtypes for the same values.
    frame = pd.DataFrame.from_records(data=rows, columns=columns)

    tag_keys = sorted({key for trace in traces for key in trace.info.tags})
    if tag_keys:
        # object dtype keeps None for a missing tag (a str column would turn it into NaN).
        tag_columns = pd.DataFrame(
            {
                f"{TAG_COLUMN_PREFIX}{key}": pd.Series(
                    [trace.info.tags.get(key) for trace in traces], dtype=object, index=frame.index
                )
                for key in tag_keys
            }
        )
        frame = pd.concat([frame, tag_columns], axis=1)
    return frame
