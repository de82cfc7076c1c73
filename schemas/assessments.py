"""Assessment versions that update or delete another: events never change, so an update is a new
version and a deletion a marker, both carrying the id MLflow's client knows in their metadata.
Written by the SDK and the API's MLflow REST drop-in alike; the stream and the reads resolve them."""

from __future__ import annotations

from tracestream.schemas.ids import new_assessment_id
from tracestream.schemas.records import AssessmentLogged

UPDATES_ASSESSMENT = "tracestream.assessment.updates"
DELETES_ASSESSMENT = "tracestream.assessment.deletes"


def assessment_deletion(
    trace_id: str, assessment_id: str, version_id: str | None, now_ms: int
) -> AssessmentLogged:
    """The marker that deletes ``assessment_id``: it overrides its current version
    ``version_id`` (so searches no longer see it) and is itself invalid; reads hide both."""
    return {
        "assessment_id": new_assessment_id(),
        "trace_id": trace_id,
        "name": "",  # the stream gives it the deleted assessment's name
        "kind": "FEEDBACK",
        "value_json": None,
        "error": None,
        "source_type": "SOURCE_TYPE_UNSPECIFIED",
        "source_id": "default",
        "rationale": None,
        "metadata": {DELETES_ASSESSMENT: assessment_id},
        "span_id": None,
        "create_time_ms": now_ms,
        "last_update_time_ms": now_ms,
        "overrides": version_id or assessment_id,
        "valid": False,
    }
