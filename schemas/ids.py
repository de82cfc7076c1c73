"""Identifiers in MLflow's formats."""

from __future__ import annotations

import random
import re

TRACE_ID_PREFIX = "tr-"
ASSESSMENT_ID_PREFIX = "a-"
TRACE_ID_PATTERN = re.compile(r"^tr-[0-9a-f]{32}$")
SPAN_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")


def new_trace_id() -> str:
    """``tr-`` + 32 lowercase hex digits, as MLflow derives it from a 128-bit OTel trace id."""
    # random (not os.urandom): ids need uniqueness, not secrecy, and a syscall per id is slow;
    # the random module reseeds itself in forked children.
    return f"{TRACE_ID_PREFIX}{random.getrandbits(128):032x}"


def new_span_id() -> str:
    """16 lowercase hex digits: a 64-bit OTel span id."""
    return f"{random.getrandbits(64):016x}"


def new_assessment_id() -> str:
    return f"{ASSESSMENT_ID_PREFIX}{random.getrandbits(128):032x}"


def is_trace_id(value: str) -> bool:
    return TRACE_ID_PATTERN.match(value) is not None


def is_span_id(value: str) -> bool:
    return SPAN_ID_PATTERN.match(value) is not None
