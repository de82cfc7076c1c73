"""The index template and retention by whole daily indices, on the real OpenSearch."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import date

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import RequestError

from indexing.support import drop_indices, isolated_settings
from tracestream.indexer import IndexNames, delete_indices_older_than, ensure_index_template
from tracestream.indexer.mapping import GC_DELETES, index_template
from tracestream.settings import Settings


@pytest.fixture
def index_settings(opensearch: OpenSearch, unique_name: str) -> Iterator[Settings]:
    settings = isolated_settings(Settings(), unique_name)
    yield settings
    drop_indices(opensearch, settings)


def test_the_template_can_be_applied_again_and_new_daily_indices_join_the_read_alias(
    opensearch: OpenSearch, index_settings: Settings
) -> None:
    names = IndexNames.from_settings(index_settings)
    ensure_index_template(opensearch, index_settings)
    ensure_index_template(opensearch, index_settings)

    opensearch.indices.create(index=names.daily(1_763_800_000_000))

    aliases = opensearch.indices.get_alias(name=names.read_alias)
    assert list(aliases) == [f"{index_settings.opensearch.index_prefix}-traces-2025.11.22"]
    mapping = opensearch.indices.get_mapping(index=names.read_alias)
    properties = next(iter(mapping.values()))["mappings"]["properties"]
    assert properties["spans"]["type"] == "nested"
    assert properties["tags"]["type"] == "nested"


def test_retention_deletes_whole_days_older_than_the_window_and_nothing_else(
    opensearch: OpenSearch, index_settings: Settings
) -> None:
    prefix = index_settings.opensearch.index_prefix
    ensure_index_template(opensearch, index_settings)
    for day in ("2026.11.10", "2026.11.14", "2026.11.15", "2026.11.22"):
        opensearch.indices.create(index=f"{prefix}-traces-{day}")
    opensearch.indices.create(index=f"{prefix}-traces-manual-backup")

    deleted = delete_indices_older_than(opensearch, index_settings, days=7, today=date(2026, 11, 22))

    assert deleted == [f"{prefix}-traces-2026.11.10", f"{prefix}-traces-2026.11.14"]
    remaining = sorted(opensearch.indices.get(index=f"{prefix}-traces-*"))
    assert remaining == [
        f"{prefix}-traces-2026.11.15",
        f"{prefix}-traces-2026.11.22",
        f"{prefix}-traces-manual-backup",
    ]


def test_a_daily_index_made_before_the_link_fields_accepts_linked_traces_once_the_template_is_applied(
    opensearch: OpenSearch, index_settings: Settings
) -> None:
    names = IndexNames.from_settings(index_settings)
    index = names.daily(1_763_800_000_000)
    template = index_template(index_settings)["template"]
    older = copy.deepcopy(template["mappings"])
    for field in ("linked_run_ids", "linked_prompts"):
        del older["properties"][field]
    opensearch.indices.create(index=index, body={"settings": template["settings"], "mappings": older})
    linked = {"trace_id": "tr-1", "linked_run_ids": ["run-eval-7"], "linked_prompts": ["qa-prompt/3"]}
    with pytest.raises(RequestError, match="strict_dynamic_mapping_exception"):
        opensearch.index(index=index, id="tr-1", body=linked)

    ensure_index_template(opensearch, index_settings)

    opensearch.index(index=index, id="tr-1", body=linked, refresh=True)
    found = opensearch.count(index=index, body={"query": {"term": {"linked_run_ids": "run-eval-7"}}})
    assert found["count"] == 1
    settings = opensearch.indices.get_settings(index=index, name="index.gc_deletes")
    assert settings[index]["settings"]["index"]["gc_deletes"] == GC_DELETES


def test_bringing_indices_up_to_the_template_leaves_other_indices_of_the_pattern_alone(
    opensearch: OpenSearch, index_settings: Settings
) -> None:
    prefix = index_settings.opensearch.index_prefix
    backup = f"{prefix}-traces-manual-backup"
    opensearch.indices.create(index=backup, body={"mappings": {"properties": {"run_id": {"type": "text"}}}})

    ensure_index_template(opensearch, index_settings)

    properties = opensearch.indices.get_mapping(index=backup)[backup]["mappings"]["properties"]
    assert properties == {"run_id": {"type": "text"}}
