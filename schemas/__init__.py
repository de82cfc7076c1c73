"""tracestream's data contract: Avro schemas of the events and completed-traces topics,
their encoding, ids and MLflow's reserved keys. Imports nothing else of the project.

The codec (fastavro, the shipped schema files) loads on first use of one of its names, not on
import: the SDK's API imports this package, and an application whose encoder cannot load must
still import and run it (the SDK then counts every event as failed and says why).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tracestream.schemas.errors import DecodeError as DecodeError
from tracestream.schemas.errors import DecodeReason as DecodeReason
from tracestream.schemas.errors import EncodeError as EncodeError
from tracestream.schemas.errors import SchemaError as SchemaError
from tracestream.schemas.ids import is_span_id as is_span_id
from tracestream.schemas.ids import is_trace_id as is_trace_id
from tracestream.schemas.ids import new_assessment_id as new_assessment_id
from tracestream.schemas.ids import new_span_id as new_span_id
from tracestream.schemas.ids import new_trace_id as new_trace_id
from tracestream.schemas.mlflow_keys import TRACE_SCHEMA_VERSION as TRACE_SCHEMA_VERSION
from tracestream.schemas.mlflow_keys import SpanAttributeKey as SpanAttributeKey
from tracestream.schemas.mlflow_keys import SpanType as SpanType
from tracestream.schemas.mlflow_keys import TraceMetadataKey as TraceMetadataKey
from tracestream.schemas.mlflow_keys import TraceTagKey as TraceTagKey
from tracestream.schemas.records import ASSESSMENT_LOGGED as ASSESSMENT_LOGGED
from tracestream.schemas.records import EVENT_BATCH as EVENT_BATCH
from tracestream.schemas.records import FIRST_SEEN_HEADER as FIRST_SEEN_HEADER
from tracestream.schemas.records import SPAN_ENDED as SPAN_ENDED
from tracestream.schemas.records import TRACE_DELETED as TRACE_DELETED
from tracestream.schemas.records import TRACE_ENDED as TRACE_ENDED
from tracestream.schemas.records import TRACE_LINKED as TRACE_LINKED
from tracestream.schemas.records import TRACE_TAGS_CHANGED as TRACE_TAGS_CHANGED
from tracestream.schemas.records import events_of as events_of

if TYPE_CHECKING:
    from tracestream.schemas.codec import AvroCodec as AvroCodec
    from tracestream.schemas.codec import alerts_codec as alerts_codec
    from tracestream.schemas.codec import completed_codec as completed_codec
    from tracestream.schemas.codec import dead_letters_codec as dead_letters_codec
    from tracestream.schemas.codec import events_codec as events_codec
    from tracestream.schemas.codec import rule_alerts_codec as rule_alerts_codec
    from tracestream.schemas.codec import schema_json as schema_json
    from tracestream.schemas.registry import SchemaSet as SchemaSet
    from tracestream.schemas.registry import SchemaVersion as SchemaVersion
    from tracestream.schemas.registry import shipped as shipped

_LOADED_ON_USE = {
    **dict.fromkeys(
        [
            "AvroCodec",
            "schema_json",
            "events_codec",
            "completed_codec",
            "alerts_codec",
            "rule_alerts_codec",
            "dead_letters_codec",
        ],
        "tracestream.schemas.codec",
    ),
    **dict.fromkeys(["SchemaSet", "SchemaVersion", "shipped"], "tracestream.schemas.registry"),
}


def __getattr__(name: str) -> Any:
    module = _LOADED_ON_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
