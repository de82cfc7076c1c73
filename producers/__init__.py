"""The tracestream instrumentation SDK: MLflow's tracing API, publishing to Kafka.

Port MLflow-instrumented code by changing the import::

    from tracestream import producers as mlflow

    @mlflow.trace(span_type=mlflow.SpanType.LLM)
    def answer(question: str) -> str: ...
"""

from tracestream.producers import tracing as tracing
from tracestream.producers.asgi import TracingMiddleware as TracingMiddleware
from tracestream.producers.asgi import instrument_fastapi as instrument_fastapi
from tracestream.producers.config import ProducerConfig as ProducerConfig
from tracestream.producers.config import SdkOptions as SdkOptions
from tracestream.producers.fluent import Assessment as Assessment
from tracestream.producers.fluent import AssessmentError as AssessmentError
from tracestream.producers.fluent import AssessmentSource as AssessmentSource
from tracestream.producers.fluent import AssessmentSourceType as AssessmentSourceType
from tracestream.producers.fluent import Expectation as Expectation
from tracestream.producers.fluent import Experiment as Experiment
from tracestream.producers.fluent import Feedback as Feedback
from tracestream.producers.fluent import delete_assessment as delete_assessment
from tracestream.producers.fluent import delete_trace_tag as delete_trace_tag
from tracestream.producers.fluent import flush_trace_async_logging as flush_trace_async_logging
from tracestream.producers.fluent import get_active_trace_id as get_active_trace_id
from tracestream.producers.fluent import get_assessment as get_assessment
from tracestream.producers.fluent import get_current_active_span as get_current_active_span
from tracestream.producers.fluent import get_last_active_trace_id as get_last_active_trace_id
from tracestream.producers.fluent import log_assessment as log_assessment
from tracestream.producers.fluent import log_expectation as log_expectation
from tracestream.producers.fluent import log_feedback as log_feedback
from tracestream.producers.fluent import override_feedback as override_feedback
from tracestream.producers.fluent import set_experiment as set_experiment
from tracestream.producers.fluent import set_trace_tag as set_trace_tag
from tracestream.producers.fluent import start_span as start_span
from tracestream.producers.fluent import start_span_no_context as start_span_no_context
from tracestream.producers.fluent import trace as trace
from tracestream.producers.fluent import update_assessment as update_assessment
from tracestream.producers.fluent import update_current_trace as update_current_trace
from tracestream.producers.fluent import with_trace_context as with_trace_context
from tracestream.producers.processor import SdkStatsSnapshot as SdkStatsSnapshot
from tracestream.producers.provider import configure as configure
from tracestream.producers.provider import flush as flush
from tracestream.producers.provider import get_stats as get_stats
from tracestream.producers.provider import shutdown as shutdown
from tracestream.producers.routes import MisplacedTraceDecoratorWarning as MisplacedTraceDecoratorWarning
from tracestream.producers.span import LiveSpan as LiveSpan
from tracestream.producers.span import SpanEvent as SpanEvent
from tracestream.producers.span import SpanStatus as SpanStatus
from tracestream.producers.span import SpanStatusCode as SpanStatusCode
from tracestream.schemas import SpanType as SpanType

__all__ = [
    "Assessment",
    "AssessmentError",
    "AssessmentSource",
    "AssessmentSourceType",
    "Expectation",
    "Experiment",
    "Feedback",
    "LiveSpan",
    "MisplacedTraceDecoratorWarning",
    "ProducerConfig",
    "SdkOptions",
    "SdkStatsSnapshot",
    "SpanEvent",
    "SpanStatus",
    "SpanStatusCode",
    "SpanType",
    "TracingMiddleware",
    "configure",
    "delete_assessment",
    "delete_trace_tag",
    "flush",
    "flush_trace_async_logging",
    "get_active_trace_id",
    "get_assessment",
    "get_current_active_span",
    "get_last_active_trace_id",
    "get_stats",
    "instrument_fastapi",
    "log_assessment",
    "log_expectation",
    "log_feedback",
    "override_feedback",
    "set_experiment",
    "set_trace_tag",
    "shutdown",
    "start_span",
    "start_span_no_context",
    "trace",
    "tracing",
    "update_assessment",
    "update_current_trace",
    "with_trace_context",
]
