"""MLflow's reserved attribute, metadata and tag keys, and its span types.

Producers write them and the stream derives trace fields from them, so both read them here.
"""

from __future__ import annotations


class SpanAttributeKey:
    TRACE_ID = "mlflow.traceRequestId"
    EXPERIMENT_ID = "mlflow.experimentId"
    SPAN_TYPE = "mlflow.spanType"
    INPUTS = "mlflow.spanInputs"
    OUTPUTS = "mlflow.spanOutputs"
    FUNCTION_NAME = "mlflow.spanFunctionName"
    CHAT_USAGE = "mlflow.chat.tokenUsage"
    LLM_COST = "mlflow.llm.cost"
    LLM_MODEL = "mlflow.llm.model"
    LLM_PROVIDER = "mlflow.llm.provider"
    MESSAGE_FORMAT = "mlflow.message.format"
    CHAT_TOOLS = "mlflow.chat.tools"
    LINKED_PROMPTS = "mlflow.linkedPrompts"
    # tracestream: set on a span the SDK closed because its trace's root ended first.
    AUTO_CLOSED = "tracestream.span.autoClosed"
    # tracestream: attribute keys whose values were cut to the size limit.
    TRUNCATED = "tracestream.span.truncatedAttributes"


class TraceMetadataKey:
    INPUTS = "mlflow.traceInputs"
    OUTPUTS = "mlflow.traceOutputs"
    SOURCE_RUN = "mlflow.sourceRun"
    MODEL_ID = "mlflow.modelId"
    TOKEN_USAGE = "mlflow.trace.tokenUsage"
    COST = "mlflow.trace.cost"
    TRACE_USER = "mlflow.trace.user"
    TRACE_SESSION = "mlflow.trace.session"
    SIZE_BYTES = "mlflow.trace.sizeBytes"
    SIZE_STATS = "mlflow.trace.sizeStats"
    SCHEMA_VERSION = "mlflow.trace_schema.version"
    USER = "mlflow.user"
    SOURCE_NAME = "mlflow.source.name"
    SOURCE_TYPE = "mlflow.source.type"
    SOURCE_GIT_COMMIT = "mlflow.source.git.commit"
    SOURCE_GIT_BRANCH = "mlflow.source.git.branch"
    SOURCE_GIT_REPO_URL = "mlflow.source.git.repoURL"
    # tracestream: the stream finalized the trace on its idle timeout, not on completion.
    INCOMPLETE = "tracestream.trace.incomplete"
    # tracestream: the request time is further from when the stream first saw the trace than the
    # indexer's max_clock_skew_s; the trace is in the first-seen day's index (set by the indexer).
    CLOCK_SKEWED = "tracestream.trace.clockSkewed"


TRACE_SCHEMA_VERSION = "3"


class TraceTagKey:
    TRACE_NAME = "mlflow.traceName"
    LINKED_PROMPTS = "mlflow.linkedPrompts"


class SpanType:
    LLM = "LLM"
    CHAIN = "CHAIN"
    AGENT = "AGENT"
    TOOL = "TOOL"
    CHAT_MODEL = "CHAT_MODEL"
    RETRIEVER = "RETRIEVER"
    PARSER = "PARSER"
    EMBEDDING = "EMBEDDING"
    RERANKER = "RERANKER"
    MEMORY = "MEMORY"
    UNKNOWN = "UNKNOWN"
    WORKFLOW = "WORKFLOW"
    TASK = "TASK"
    GUARDRAIL = "GUARDRAIL"
    EVALUATOR = "EVALUATOR"
