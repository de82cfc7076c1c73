"""The tracestream instrumentation SDK: MLflow's tracing API, publishing to Kafka.

Port MLflow-instrumented code by changing the import::

    import producers as mlflow

    @mlflow.trace(span_type=mlflow.SpanType.LLM)
    def answer(question: str) -> str: ...
"""

from producers.fluent import Assessment as Assessment
from producers.fluent import AssessmentError as AssessmentError
from producers.fluent import AssessmentSource as AssessmentSource
from producers.fluent import AssessmentSourceType as AssessmentSourceType
from producers.fluent import Expectation as Expectation
from producers.fluent import Feedback as Feedback
from producers.fluent import delete_trace_tag as delete_trace_tag
from producers.fluent import get_active_trace_id as get_active_trace_id
from producers.fluent import get_current_active_span as get_current_active_span
from producers.fluent import log_expectation as log_expectation
from producers.fluent import log_feedback as log_feedback
from producers.fluent import override_feedback as override_feedback
from producers.fluent import set_trace_tag as set_trace_tag
from producers.fluent import start_span as start_span
from producers.fluent import start_span_no_context as start_span_no_context
from producers.fluent import trace as trace
from producers.fluent import update_current_trace as update_current_trace
from producers.fluent import with_trace_context as with_trace_context
from producers.processor import SdkStatsSnapshot as SdkStatsSnapshot
from producers.provider import configure as configure
from producers.provider import flush as flush
from producers.provider import get_stats as get_stats
from producers.provider import shutdown as shutdown
from producers.span import LiveSpan as LiveSpan
from producers.span import SpanEvent as SpanEvent
from producers.span import SpanStatus as SpanStatus
from producers.span import SpanStatusCode as SpanStatusCode
from schemas import SpanType as SpanType

__all__ = [
    "Assessment",
    "AssessmentError",
    "AssessmentSource",
    "AssessmentSourceType",
    "Expectation",
    "Feedback",
    "LiveSpan",
    "SdkStatsSnapshot",
    "SpanEvent",
    "SpanStatus",
    "SpanStatusCode",
    "SpanType",
    "configure",
    "delete_trace_tag",
    "flush",
    "get_active_trace_id",
    "get_current_active_span",
    "get_stats",
    "log_expectation",
    "log_feedback",
    "override_feedback",
    "set_trace_tag",
    "shutdown",
    "start_span",
    "start_span_no_context",
    "trace",
    "update_current_trace",
    "with_trace_context",
]
