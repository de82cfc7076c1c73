"""1,000 fuzzed filter strings against a real API process over real OpenSearch: every answer is a
200 or a 4xx with a message, never a 5xx (no input reaches OpenSearch as a query it refuses)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from opensearchpy import OpenSearch
from searching.support import ApiProcess, drop, private_settings, running_api, small_traces, write_traces

from tracestream.settings import Settings

SEEDS = [
    "attributes.status = 'ERROR'",
    "tags.env = 'prod' AND metadata.`mlflow.trace.user` LIKE 'user-1%'",
    "trace.text ILIKE '%refund%' OR span.name = 'retrieve'",
    "span.type = 'TOOL' AND span.status = 'ERROR' AND span.attributes.model = 'gpt-4o'",
    "feedback.rating >= 4 AND NOT (tags.version IN ('1.0.0', '1.2.0'))",
    "timestamp_ms > 1763800000000 AND execution_time_ms < 500",
    "tags.`mlflow.traceName` RLIKE '^support_[a-z]+$'",
    "expectation.expected_answer IS NOT NULL",
    "total_tokens > 1000 OR span.duration_ms > 250.5",
    "request_preview LIKE '%order A1%'",
]
FRAGMENTS = [
    "(",
    ")",
    "'",
    '"',
    "`",
    "\\",
    "%",
    "_",
    "*",
    "?",
    "[",
    "]",
    "{",
    "}",
    "|",
    ".*",
    "(?=x)",
    "\\1",
    " AND ",
    " OR ",
    " NOT ",
    " IN ",
    " LIKE ",
    " RLIKE ",
    " IS NULL",
    "=",
    "!=",
    "<=",
    ">",
    "==",
    "tags.",
    "span.",
    "feedback.",
    "attributes.",
    "1e400",
    "-9223372036854775809",
    "NaN",
    "é",
    "\x00",
    "\u202e",
    "😀",
    "(" * 50,
    "a" * 5000,
    "(a+)+$",
    "[^\\x00-\\x7f]",
    "\n",
    "\t",
    ",",
    ";",
    "--",
]


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        where = rng.randint(0, len(text))
        action = rng.random()
        if action < 0.4:
            text = text[:where] + rng.choice(FRAGMENTS) + text[where:]
        elif action < 0.7 and text:
            text = text[:where] + text[where + rng.randint(1, 8) :]
        elif action < 0.85:
            text = text[:where] + rng.choice(SEEDS) + text[where:]
        else:
            text = "".join(rng.sample(text, len(text))) if len(text) < 200 else text[::-1]
    return text


def fuzzed_filters(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    filters: list[str] = []
    while len(filters) < count:
        roll = rng.random()
        if roll < 0.7:
            filters.append(_mutate(rng, rng.choice(SEEDS)))
        elif roll < 0.85:
            filters.append("".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 12))))
        else:
            filters.append("".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 80))))
    return filters


@pytest.fixture(scope="module")
def api(opensearch: OpenSearch) -> Iterator[ApiProcess]:
    settings = private_settings(Settings())
    write_traces(opensearch, settings, small_traces(50, seed=3, start_ms=1_763_800_000_000))
    try:
        with running_api(settings) as process:
            yield process
    finally:
        drop(opensearch, settings)


def test_a_thousand_fuzzed_filters_get_answers_or_messages_never_server_errors(api: ApiProcess) -> None:
    statuses: Counter[int] = Counter()
    server_errors: list[tuple[str, int, str]] = []
    with httpx.Client(base_url=api.base_url, timeout=30) as http:
        for text in fuzzed_filters(1_000, seed=2026):
            response = http.post("/api/v1/traces/search", json={"filter": text, "max_results": 5})
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                server_errors.append((text, response.status_code, response.text[:300]))
            elif response.status_code >= 400:
                body = response.json()
                assert body["error_code"] and body["message"], (text, body)
    print(f"answers by status: {dict(sorted(statuses.items()))}")

    assert not server_errors, server_errors[:5]
    assert statuses[200] > 0 and sum(n for s, n in statuses.items() if 400 <= s < 500) > 0
