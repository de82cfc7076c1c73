"""tracestream's data contract: Avro schemas of the events and completed-traces topics,
their encoding, ids and MLflow's reserved keys. Imports nothing else of the project."""

from tracestream.schemas.codec import AvroCodec as AvroCodec
from tracestream.schemas.codec import schema_json as schema_json
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
from tracestream.schemas.records import TRACE_ENDED as TRACE_ENDED
from tracestream.schemas.records import TRACE_TAGS_CHANGED as TRACE_TAGS_CHANGED
from tracestream.schemas.records import events_of as events_of
from tracestream.schemas.registry import SchemaSet as SchemaSet
from tracestream.schemas.registry import SchemaVersion as SchemaVersion
from tracestream.schemas.registry import shipped as shipped


def events_codec(schema_registry_url: str | None = None, topic: str | None = None) -> AvroCodec:
    """The codec of the events topic (``TraceEvent`` records)."""
    return AvroCodec(
        "TraceEvent", schema_registry_url=schema_registry_url, subject=f"{topic}-value" if topic else None
    )


def completed_codec(schema_registry_url: str | None = None, topic: str | None = None) -> AvroCodec:
    """The codec of the completed-traces topic (``CompletedTrace`` records)."""
    return AvroCodec(
        "CompletedTrace", schema_registry_url=schema_registry_url, subject=f"{topic}-value" if topic else None
    )


def alerts_codec(schema_registry_url: str | None = None, topic: str | None = None) -> AvroCodec:
    """The codec of the alerts topic (``TraceAlert`` records)."""
    return AvroCodec(
        "TraceAlert", schema_registry_url=schema_registry_url, subject=f"{topic}-value" if topic else None
    )


def dead_letters_codec(schema_registry_url: str | None = None, topic: str | None = None) -> AvroCodec:
    """The codec of the dead-letter topic (``DeadLetter`` records)."""
    return AvroCodec(
        "DeadLetter", schema_registry_url=schema_registry_url, subject=f"{topic}-value" if topic else None
    )
