"""Identifiers in MLflow's formats."""

from __future__ import annotations

import os
import re

TRACE_ID_PREFIX = "tr-"
ASSESSMENT_ID_PREFIX = "a-"
TRACE_ID_PATTERN = re.compile(r"^tr-[0-9a-f]{32}$")
SPAN_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")


def new_trace_id() -> str:
    """``tr-`` + 32 lowercase hex digits, as MLflow derives it from a 128-bit OTel trace id."""
    return TRACE_ID_PREFIX + os.urandom(16).hex()


def new_span_id() -> str:
    """16 lowercase hex digits: a 64-bit OTel span id."""
    return os.urandom(8).hex()


def new_assessment_id() -> str:
    return ASSESSMENT_ID_PREFIX + os.urandom(16).hex()


def is_trace_id(value: str) -> bool:
    return TRACE_ID_PATTERN.match(value) is not None


def is_span_id(value: str) -> bool:
    return SPAN_ID_PATTERN.match(value) is not None
