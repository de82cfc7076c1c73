"""The filter / order_by combinations run against both MLflow and tracestream.

Placeholders ``<<tN>>`` (trace N's id), ``<<tsN>>`` (its timestamp), ``<<usageN>>`` (its
``mlflow.trace.tokenUsage`` metadata) are filled from the dataset before anything runs;
``<<linked_run>>`` (a run MLflow creates) is filled by each side once the run exists.
String literals are raw: MLflow does no escape processing, and neither may the test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dsl_differential.dataset import DAY_MS, LOCATIONS, START_MS
from tracestream.schemas.records import CompletedTrace

ALL = tuple(LOCATIONS)


@dataclass(frozen=True)
class Case:
    filter: str | None
    order_by: tuple[str, ...] | None = None
    locations: tuple[str, ...] = ALL

    def key(self, traces: list[CompletedTrace]) -> tuple[str | None, tuple[str, ...] | None, tuple[str, ...]]:
        text = None if self.filter is None else substitute(self.filter, traces)
        return text, self.order_by, self.locations

    @property
    def label(self) -> str:
        parts = [self.filter if self.filter is not None else "<none>"]
        if self.order_by is not None:
            parts.append("ORDER BY " + ", ".join(self.order_by))
        if self.locations != ALL:
            parts.append("IN " + ",".join(self.locations))
        return " | ".join(parts)


_PLACEHOLDER = re.compile(r"<<(t|ts|usage)(\d+)>>")


def substitute(text: str, traces: list[CompletedTrace]) -> str:
    def value(match: re.Match[str]) -> str:
        trace = traces[int(match.group(2))]
        kind = match.group(1)
        if kind == "t":
            return trace["trace_id"]
        if kind == "ts":
            return str(trace["info"]["request_time_ms"])
        return trace["info"]["metadata"]["mlflow.trace.tokenUsage"]

    return _PLACEHOLDER.sub(value, text)


DAY2 = START_MS + DAY_MS
DAY3 = START_MS + 2 * DAY_MS


def _cases(*filters: str) -> list[Case]:
    return [Case(f) for f in filters]


CASES: list[Case] = [
    Case(None),
    # ---------------------------------------------------------------- trace attributes, every prefix
    *_cases(
        "status = 'OK'",
        "attribute.status = 'ERROR'",
        "attributes.status = 'IN_PROGRESS'",
        "trace.status = 'OK'",
        "`status` = 'ERROR'",
        "`attributes`.status = 'ERROR'",
        "status = 'ok'",
        "status != 'OK'",
        "status IN ('ERROR', 'IN_PROGRESS')",
        "status NOT IN ('OK')",
        "status in ('ERROR')",
        "status LIKE 'E%'",
        "status LIKE '%_PROGRESS'",
        "status ILIKE 'in_progress'",
        "status ILIKE 'o%'",
        "status RLIKE '^(OK|ERROR)$'",
        "status RLIKE 'R'",
        "request_id = '<<t7>>'",
        "trace.request_id IN ('<<t1>>', '<<t2>>', '<<t99>>')",
        "request_id NOT IN ('<<t1>>', '<<t2>>')",
        "request_id LIKE 'tr-0%'",
        "request_id ILIKE 'TR-A%'",
        "request_id RLIKE '^tr-[0-3]'",
        "request_id != '<<t3>>'",
        "client_request_id = 'req-001'",
        "trace.client_request_id != 'req-001'",
        "client_request_id LIKE 'req-00_'",
        "client_request_id ILIKE 'REQ-01%'",
        "client_request_id RLIKE '5$'",
        "client_request_id IN ('req-001', 'req-003', 'req-002')",
        "client_request_id NOT IN ('req-001')",
        # numbers: timestamps (three days, ties), durations, end times
        f"timestamp_ms > {DAY2}",
        f"timestamp_ms >= {DAY3}",
        f"trace.timestamp_ms < {DAY2}",
        "timestamp_ms <= <<ts4>>",
        "timestamp_ms = <<ts4>>",
        "timestamp_ms != <<ts4>>",
        f"timestamp > {DAY2}",
        f"attributes.timestamp > {DAY3}",
        f"`timestamp` >= {DAY3}.0",
        f"timestamp_ms > '{DAY3}'",
        "execution_time_ms > 500",
        "execution_time < 300",
        "execution_time_ms != 0",
        "execution_time_ms = 0",
        "execution_time_ms >= 1.5",
        f"end_time > {DAY3}",
        f"end_time_ms <= {DAY2}",
        "end_time_ms = <<ts13>>",
        f"timestamp_ms > {DAY2} AND timestamp_ms < {DAY3} AND execution_time_ms > 100",
        # trace name: aliases whatever the prefix, nullable
        "name = 'support_agent'",
        "trace.name = 'support_agent'",
        "tag.name = 'billing-flow'",
        "tags.NAME = 'billing-flow'",
        "metadata.name = 'billing-flow'",
        "feedback.name = 'chat.pipeline'",
        "tags.mlflow.traceName = 'résumé_builder'",
        "tags.`mlflow.traceName` LIKE 'support%'",
        "name != 'support_agent'",
        "name LIKE 'support%'",
        "name ILIKE 'SUPPORT%'",
        "name LIKE '%.%'",
        "name RLIKE '_agent$'",
        "name RLIKE '^r.sum.'",
        "name IS NULL",
        "name IS NOT NULL",
        "name = 'résumé_builder' AND status = 'OK'",
        # run ids: metadata mlflow.sourceRun
        "run_id = 'run1'",
        "attributes.run_id = 'run2'",
        "metadata.mlflow.sourceRun = 'run0'",
        "metadata.run_id = 'run1'",
        "run_id != 'run1'",
        "run_id LIKE 'run%'",
        "run_id IS NULL",
        "run_id IS NOT NULL",
        # prompts and issues: nothing in the dataset links them; the filters must still parse
        "prompt = 'qa/1'",
        "issue.id = 'iss-1'",
    ),
    # ---------------------------------------------------------------- tags
    *_cases(
        "tags.env = 'prod'",
        "tag.env = 'prod'",
        "`tags`.env = 'staging'",
        "tags.`env` = 'dev'",
        "tags.\"env\" = 'dev'",
        "tags.'env' = 'dev'",
        "tags.env != 'prod'",
        "tags.env = 'nope'",
        "tags.env LIKE 'pro%'",
        "tags.env LIKE 'P%'",
        "tags.env like 'P%'",
        "tags.env ILIKE 'prod'",
        "tags.env ILIKE 'PR_D'",
        "tags.env RLIKE '^P'",
        "tags.env RLIKE 'od$'",
        "tags.env RLIKE '^(dev|staging)$'",
        "tags.env RLIKE '[A-Z]{4}'",
        "tags.env IS NULL",
        "tags.env IS NOT NULL",
        "tags.Env = 'prod'",
        "tags.env = 'prod' AND tags.Env = 'prod'",
        "tags.team = 'care'",
        "tags.team = 'équipe-ü'",
        "tags.team LIKE '%ü'",
        "tags.team LIKE 'É%'",
        "tags.team ILIKE 'care'",
        "tags.team ILIKE '%CAF%'",
        "tags.team LIKE 'ops_1'",
        "tags.team LIKE 'ops\\_1'",
        "tags.team = '日本語チーム'",
        "tags.team LIKE '日本%'",
        "tags.team RLIKE 'チ.ム'",
        "tags.team RLIKE '^[a-z]+$'",
        "tags.team RLIKE '\\d'",
        "tags.team RLIKE 'ops\\w1'",
        "tags.team != 'care' AND tags.team != 'CARE'",
        'tags.note = "it\'s fine"',
        "tags.note = 'say \"hi\"'",
        "tags.note LIKE '%\"hi\"%'",
        "tags.note = 'it''s fine'",
        "tags.note = 'C:\\temp\\new'",
        "tags.note LIKE 'C:\\%'",
        "tags.note RLIKE 'C:\\\\temp'",
        "tags.note RLIKE '\\\\new$'",
        "tags.note = '100%'",
        "tags.note LIKE '100%'",
        "tags.note LIKE '%\\%'",
        "tags.note LIKE '%\\%%'",
        "tags.note LIKE '%0%'",
        "tags.note LIKE '%'",
        "tags.note = ''",
        "tags.note LIKE '_'",
        "tags.note LIKE 'a_b'",
        "tags.note LIKE 'a%b'",
        "tags.note RLIKE 'a.b'",
        "tags.note RLIKE '^a_b$'",
        "tags.note = 'tab\there'",
        "tags.note LIKE 'tab_here'",
        "tags.note RLIKE 'tab\\there'",
        "tags.note RLIKE '^line1.line2$'",
        "tags.note RLIKE 'line1$'",
        "tags.note RLIKE 'newline$'",
        "tags.note RLIKE '^ends.*newline$'",
        "tags.note LIKE '%newline'",
        "tags.note LIKE '%newline_'",
        "tags.note RLIKE 'line1\\nline2'",
        "tags.note LIKE 'line1_line2'",
        "tags.note = 'trailing space '",
        "tags.note LIKE '% '",
        "tags.note ILIKE 'grüsse%'",
        "tags.note LIKE '%[a-z]+%'",
        "tags.note RLIKE '\\[a-z\\]\\+'",
        "tags.note RLIKE '\\(x\\|y\\)'",
        "tags.note LIKE '%*%'",
        "tags.note LIKE '%?%'",
        "tags.note RLIKE '\\*'",
        "tags.note RLIKE '\\?'",
        "tags.note RLIKE '[*?]'",
        "tags.note RLIKE 'a{1}b|X{1,2}b'",
        "tags.note RLIKE '\"'",
        "tags.note RLIKE '<|>|@|#|&|~'",
        "tags.note RLIKE '\\s'",
        "tags.note RLIKE '^\\S+$'",
        "tags.note RLIKE 'tab[\\s]here'",
        "tags.note RLIKE 'form\\sfeed'",
        "tags.team RLIKE '\\x6f\\x70'",
        "tags.team RLIKE '^[^a-z]'",
        "tags.team RLIKE '[]c]'",
        "tags.version RLIKE '^1\\.2{,1}\\.'",
        "tags.env RLIKE '(pr|st)+'",
        "tags.env RLIKE ''",
        "tags.env RLIKE '^(P|p)ro(d|D)$|^dev$'",
        "tags.env is null",
        "tags.env is not null",
        "tags.env not like 'p%'",
        "tags.version LIKE '1.2%'",
        "tags.version RLIKE '^1\\.2\\.0$'",
        "tags.version RLIKE '^1\\.[0-9]+\\.'",
        "tags.version RLIKE 'rc\\d+'",
        "tags.`app.region` = 'eu-west-1'",
        "tags.app.region LIKE 'us-%'",
        "tags.`clé` = 'valeur'",
        "tags.`clé` ILIKE 'VALEUR'",
        "tags.`weird key` = 'x y'",
        "tags.\"weird key\" LIKE 'x%'",
        "tags.env = 'prod' AND tags.team ILIKE 'care' AND status = 'OK'",
        "and tags.env = 'dev' AND AND status = 'OK' and",
        "tags.env='dev'AND status='OK'",
    ),
    # ---------------------------------------------------------------- metadata
    *_cases(
        "metadata.customer_tier = 'gold'",
        "request_metadata.customer_tier = 'gold'",
        "metadata.customer_tier != 'gold'",
        "metadata.customer_tier ILIKE 'gold'",
        "metadata.customer_tier LIKE 'plä%'",
        "metadata.customer_tier RLIKE 'ä'",
        "metadata.customer_tier IS NULL",
        "metadata.customer_tier IS NOT NULL",
        "metadata.ticket = 'T-100%'",
        "metadata.ticket LIKE 'T-100%'",
        "metadata.ticket LIKE 'T_200'",
        "metadata.ticket LIKE 'T\\%'",
        "metadata.ticket RLIKE 'T\\\\4'",
        "metadata.ticket ILIKE 't%'",
        "metadata.ticket LIKE 't%'",
        "metadata.mlflow.trace.user = 'user-3'",
        "metadata.`mlflow.trace.user` LIKE 'user-1%'",
        "metadata.mlflow.trace.user != 'user-3'",
        "metadata.mlflow.trace.session = 'session-5'",
        "metadata.mlflow.trace.session != 'session-5'",
        "metadata.mlflow.trace.session LIKE '%-1'",
        "metadata.mlflow.trace.session IS NULL",
        "metadata.mlflow.traceInputs LIKE '%«care»%'",
        "metadata.mlflow.traceOutputs RLIKE 'shipped_1[0-9] '",
        "metadata.`mlflow.trace.tokenUsage` = '<<usage5>>'",
        "metadata.`mlflow.trace.tokenUsage` != '<<usage5>>'",
        "metadata.`mlflow.trace.tokenUsage` IS NULL",
        "metadata.`mlflow.trace.tokenUsage` IS NOT NULL",
        "metadata.`mlflow.trace.cost` IS NULL",
        "metadata.mlflow.trace_schema.version = '3'",
        "metadata.customer_tier = 'gold' AND tags.env = 'prod'",
    ),
    # ---------------------------------------------------------------- spans
    *_cases(
        "span.name = 'chat'",
        "span.name = 'Chat'",
        "span.name != 'chat'",
        "span.name IN ('chat', 'Chat')",
        "span.name NOT IN ('chat', 'search_kb', 'retrieve', 'Retrieve')",
        "span.name LIKE 'ch%'",
        "span.name ILIKE 'CHAT'",
        "span.name RLIKE '^[cC]hat$'",
        "span.name = 'générer'",
        "span.name LIKE 'g_n_rer'",
        "span.type = 'LLM'",
        "span.type = 'llm'",
        "span.type IN ('LLM', 'CHAT_MODEL')",
        "span.type != 'AGENT'",
        "span.type LIKE 'CHAT%'",
        "span.type ILIKE 'chat_model'",
        "span.status = 'ERROR'",
        "span.status = 'UNSET'",
        "span.status != 'OK'",
        "span.status IN ('UNSET', 'ERROR')",
        "span.status NOT IN ('OK')",
        # all span clauses hold for one span
        "span.type = 'LLM' AND span.status = 'ERROR'",
        "span.type = 'LLM' AND span.type = 'TOOL'",
        "span.type = 'TOOL' AND span.status = 'ERROR' AND status = 'OK'",
        "span.name = 'chat' AND span.attributes.model ILIKE '%mini%'",
        "span.name = 'search_kb' AND trace.text LIKE '%Zürich%'",
        "span.type = 'RETRIEVER' AND span.content LIKE '%\"top_k\": \"5\"%'",
        "span.name = 'retrieve' AND span.name = 'Retrieve'",
        "span.status = 'ERROR' AND span.type = 'AGENT' AND tags.env = 'prod'",
        # span attributes where MLflow's loose translation gives the same answer
        "span.attributes.model LIKE '%gpt-4o%'",
        "span.attributes.model ILIKE '%GPT-4O%'",
        "span.attributes.model LIKE '%claude%'",
        "span.attributes.`tool.name` LIKE '%refund%'",
        "span.attributes.tool.name LIKE '%_address%'",
        "span.attributes.`région` LIKE '%Zürich%'",
        "span.attributes.stream LIKE '%true%'",
        "span.attributes.model RLIKE '^gpt-4o$'",
        "span.attributes.model RLIKE 'mini$'",
        "span.attributes.model RLIKE 'sonnet'",
        "span.attributes.missing LIKE '%x%'",
        "span.attributes.model RLIKE '^(gpt-4o|claude-3-5-sonnet)$'",
        "span.attributes.`tool.name` RLIKE '^search_kb$'",
        "span.attributes.model RLIKE '^GPT-4[O]$'",
        "span.attributes.model RLIKE '4o-'",
        "span.attributes.`région` RLIKE '^Z.rich$'",
        # full text: the span JSON as MLflow stores it
        "trace.text LIKE '%réponse%'",
        "span.content LIKE '%réponse 100\\% sûr%'",
        "trace.text ILIKE '%Réponse%'",
        "trace.text LIKE '%STATUS_CODE_ERROR%'",
        "trace.text LIKE '%429 Too Many%'",
        "trace.text LIKE '%C:\\\\\\\\orders%'",
        "trace.text LIKE '%it''s%'",
        "trace.text LIKE '%it\\'s \\\\\"x\\\\\"%'",
        "trace.text ILIKE '%naïve_tool%'",
        "trace.text LIKE '%«%'",
        "trace.text LIKE '%answer_1_ 50%'",
        "trace.text LIKE '{%'",
        "trace.text LIKE '%\"Ok\"%'",
        "trace.text LIKE '%\\\"Ok\\\"%'",
        "attributes.text LIKE '%shipped_9 %'",
    ),
    # ---------------------------------------------------------------- backslashes in LIKE patterns
    # MLflow's LIKE has no escape character (SQLite, no ESCAPE clause): a backslash is itself, and
    # the % or _ after it is still a wildcard. The span JSON holds the tool path C:\orders\new as
    # C:\\\\orders\\\\new (encoded twice) and each trace id as \"<id>\" (mlflow.traceRequestId); the
    # attribute entry as C:\\orders\\new. On the span text and attribute entries (wildcard
    # fields) a backslash right before % or _ is where OpenSearch 2.19 misses matches.
    *_cases(
        r"span.content LIKE '%\"<<t0>>\%'",  # the hypothesis find: \" then the id then \ and any run
        r"trace.text LIKE '%C:\%'",  # \% = a backslash then any run, not a literal %
        r"trace.text LIKE '%orders\%new%'",
        r"trace.text LIKE '%\\\_new%'",  # three backslashes, one character (the fourth), new
        r"trace.text LIKE '%C:\\\\orders\\\\new%'",  # \\ is two backslashes, not one
        r"trace.text LIKE '%C:\\orders%'",  # ... so two do not match the four stored
        r"trace.text ILIKE '%c:\\\\ORDERS\%'",
        r"""trace.text ILIKE '%\"<<t1>>\__, "MLFLOW.SPANTYPE%'""",  # \ then two characters: ""
        r"trace.text LIKE '%\'",  # a trailing backslash is a backslash (no span text ends in one)
        r"span.name = 'lookup_order' AND span.content LIKE '%path\%C:\%'",
        r"span.attributes.mlflow.spanInputs LIKE '%C:\%'",
        r"span.attributes.mlflow.spanInputs LIKE '%orders\%new%'",
        r"span.attributes.mlflow.spanInputs ILIKE '%ORDERS\_%'",
        r"tags.note LIKE 'C:\temp\%'",  # keyword fields: Lucene's own wildcard query
        r"metadata.ticket LIKE 'T\_00'",
        r"metadata.ticket LIKE 'T\4%'",
        r"metadata.ticket ILIKE 't\%'",
    ),
    # ---------------------------------------------------------------- assessments
    *_cases(
        "feedback.rating = '4'",
        "feedback.rating != '4'",
        "feedback.rating > 3",
        "feedback.rating >= 3.5",
        "feedback.rating < 2",
        "feedback.rating <= 1",
        "feedback.rating > 3 AND feedback.rating < 4",
        "feedback.rating = '3.5'",
        "feedback.rating LIKE '3%'",
        "feedback.rating RLIKE '^[45]$'",
        "feedback.rating IS NULL",
        "feedback.rating IS NOT NULL",
        "feedback.`rating` = '1'",
        "feedback.\"rating\" = '2'",
        "feedback.correct = 'true'",
        "feedback.correct = 'false'",
        "feedback.correct = 'True'",
        "feedback.correct != 'true'",
        "feedback.correct > 0",
        "feedback.quality = 'high'",
        "feedback.quality = '\"high\"'",
        "feedback.quality = 'High'",
        "feedback.quality LIKE 'high'",
        "feedback.quality LIKE '%high%'",
        "feedback.quality ILIKE '%HIGH%'",
        "feedback.quality RLIKE '^\"h'",
        "feedback.quality = 'so \"so\"'",
        "feedback.quality = 'médiocre'",
        "feedback.quality != 'médiocre'",
        'feedback.quality = "it\'s ok"',
        "feedback.quality != 'low'",
        "feedback.judge IS NOT NULL",
        "feedback.judge != 'x'",
        "feedback.score IS NOT NULL",
        "feedback.score > 0",
        "feedback.score = 'NaN'",
        "feedback.grounded = 'true'",
        "expectation.expected_answer = 'refund 8% issued'",
        "expectation.expected_answer LIKE '%8\\% issued%'",
        "expectation.expected_answer LIKE '%\\% issued%'",
        "expectation.expected_facts LIKE '%A1003%'",
        'expectation.expected_facts = \'["refund", "order A1011"]\'',
        "expectation.expected_score > 1",
        "expectation.expected_score = '2'",
        "expectation.expected_score IS NULL",
        "feedback.expected_score IS NOT NULL",
        "expectation.rating IS NOT NULL",
        "feedback.rating >= 4 AND tags.env = 'prod'",
        "feedback.rating > 2 AND feedback.correct = 'true' AND span.type = 'LLM'",
    ),
    # ---------------------------------------------------------------- order_by
    Case(None, ("timestamp_ms ASC",)),
    Case(None, ("timestamp DESC",)),
    Case(None, ("timestamp",)),
    Case("status = 'OK'", ("name ASC",)),
    Case(None, ("name DESC",)),
    Case(None, ("attributes.name",)),
    Case(None, ("tags.env",)),
    Case(None, ("tag.env DESC", "request_id DESC")),
    Case(None, ("tags.team ASC",)),
    Case(None, ("tags.note DESC",)),
    Case(None, ("metadata.customer_tier",)),
    Case(None, ("metadata.mlflow.trace.session DESC",)),
    Case(None, ("execution_time_ms ASC",)),
    Case(None, ("execution_time DESC",)),
    Case(None, ("status",)),
    Case(None, ("status DESC", "timestamp_ms ASC")),
    Case(None, ("request_id",)),
    Case(None, ("request_id desc",)),
    Case(None, ("run_id",)),
    Case(None, ("trace.run_id DESC",)),
    Case(None, ("`timestamp_ms` asc",)),
    Case("span.type = 'LLM'", ("tags.env ASC", "metadata.customer_tier DESC")),
    Case("feedback.rating IS NOT NULL", ("tags.mlflow.traceName",)),
    # ---------------------------------------------------------------- locations
    Case("status = 'OK'", locations=("2",)),
    Case(None, locations=("11", "3")),
    Case("tags.env = 'prod'", ("timestamp_ms ASC",), ("1", "11")),
    Case(None, locations=("4",)),
    # ---------------------------------------------------------------- invalid filters
    *_cases(
        "status = OK",
        "status == 'OK'",
        "status <> 'OK'",
        "'OK' = status",
        "status = 'OK' tags.env = 'x'",
        "TAG.env = 'x'",
        "run.id = 'x'",
        "metrics.latency > 1",
        "assessment.rating = '4'",
        "status > 'OK'",
        "status IS NULL",
        "timestamp_ms LIKE '1%'",
        "timestamp > 1.5",
        "timestamp IN ('1')",
        "status IN ()",
        "status IN (1, 2)",
        "status = 5",
        "execution_time_ms IN ('5')",
        "name IN ('a')",
        "run_id IN ('a')",
        "tags.env IN ('a')",
        "tags.env = 5",
        "tags.env > 'a'",
        "metadata.k IN ('a')",
        "metadata.k = 5",
        "span.name like 'x%'",
        "span.duration > 1",
        "span.type > 'a'",
        "span.name IS NULL",
        "span.attributes. LIKE '%x%'",
        "span.attributes.model IN ('gpt-4o')",
        "span.attributes.model NOT IN ('gpt-4o')",
        "span.content = 'x'",
        "trace.text RLIKE 'x'",
        "text ILIKE '%x%'",
        "feedback.rating = 4",
        "feedback.rating > '3'",
        "feedback.rating IN ('4')",
        "prompt = 'x'",
        "prompt LIKE 'a/1'",
        "issue.x = 'a'",
        "issue.id LIKE 'a'",
        "metadata.`mlflow.trace.tokenUsage` LIKE '%x%'",
        "status = 'OK'; status = 'ERROR'",
        "status = 'OK' AND true",
        "tags.env = 'prod' AND foo",
        "status = 'OK' AND tags.x = true AND bar",
        "tags.x = 5 AND status = true",
        "status < 'x' AND tags.x = 5",
        "tags.x LIKE 'a' AND status < 'x' AND prompt = 'a'",
    ),
    # ---------------------------------------------------------------- invalid order_by
    Case(None, ("",)),
    Case(None, ("name ASC DESC",)),
    Case(None, ("status,name",)),
    Case(None, ("timestamp DESCENDING",)),
    Case(None, ("timestamp_ms DESCENDING",)),
    Case(None, ("span.name",)),
    Case(None, ("feedback.rating",)),
    Case(None, ("metadata.`mlflow.trace.tokenUsage`",)),
]


def all_case_keys(
    cases: list[Case], traces: list[CompletedTrace]
) -> list[tuple[str | None, tuple[str, ...] | None, tuple[str, ...]]]:
    """The distinct queries of ``cases``, in order."""
    return list(dict.fromkeys(case.key(traces) for case in cases))
