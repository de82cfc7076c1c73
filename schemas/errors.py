"""The errors of the data contract."""

from __future__ import annotations

from enum import StrEnum


class SchemaError(Exception):
    """Root of every error raised by schemas/."""


class EncodeError(SchemaError):
    """A record does not fit its schema."""


class DecodeReason(StrEnum):
    NOT_AVRO = "not_avro"  # the header is not the expected magic
    TRUNCATED = "truncated"  # shorter than its header, or its body ends early
    UNKNOWN_SCHEMA = "unknown_schema"  # fingerprint or registry id of no known schema
    WRONG_TYPE = "wrong_type"  # a valid record of another message type
    MALFORMED = "malformed"  # the body does not decode with its writer schema


class DecodeError(SchemaError):
    """Bytes that cannot be decoded into a record. ``reason`` says why, for dead letters."""

    def __init__(self, reason: DecodeReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
