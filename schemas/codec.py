"""Avro encoding of tracestream's messages.

Two framings, both carrying the schemaless Avro body:

* **Single-object encoding** (the Avro spec's): ``C3 01`` + the 8-byte CRC-64-AVRO
  fingerprint of the writer schema + body. The writer schema is found among the shipped
  versions, so no registry is needed. The default.
* **Confluent wire format**: ``00`` + 4-byte big-endian schema id + body, used when a
  schema registry URL is configured (the schema is registered under ``<topic>-value``).

A codec writes one framing and reads both, so consumers keep working while producers move
from one to the other. Decoding failures of any kind raise :class:`DecodeError`.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from tracestream.schemas.errors import DecodeError, DecodeReason, EncodeError
from tracestream.schemas.registry import SchemaSet, SchemaVersion, shipped, writer_fingerprint

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
SINGLE_OBJECT_HEADER_BYTES = 10
CONFLUENT_MAGIC = 0
CONFLUENT_HEADER_BYTES = 5


def schema_json(schema: SchemaVersion) -> str:
    """The full schema (docs and defaults included) as JSON, without fastavro's own keys."""

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items() if not k.startswith("__")}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    return json.dumps(clean(schema.parsed))


class AvroCodec:
    """Encodes and decodes one message type (``TraceEvent`` or ``CompletedTrace``).

    Unions of records are written and read as ``(full record name, record)`` tuples,
    which spares fastavro from guessing the branch.
    """

    def __init__(
        self,
        message_type: str,
        schema_set: SchemaSet | None = None,
        schema_registry_url: str | None = None,
        subject: str | None = None,
        registry_config: dict[str, Any] | None = None,
    ) -> None:
        self.message_type = message_type
        self._schemas = schema_set or shipped()
        self._writer = self._schemas.latest(message_type)
        self._reader = self._writer.parsed
        self._registry = None
        self._subject = subject or f"{self._writer.full_name}-value"
        self._registry_writers: dict[int, Any] = {}
        if schema_registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            self._registry = SchemaRegistryClient.new_client(
                {"url": schema_registry_url, **(registry_config or {})}
            )
        self._header: bytes | None = (
            None if self._registry else SINGLE_OBJECT_MAGIC + self._writer.fingerprint
        )
        self._branches = self._union_branches()

    def _union_branches(self) -> dict[str, tuple[bytes, Any]]:
        """For an envelope (a record whose only field is a union of records, like TraceEvent):
        each branch's Avro prefix (the union index) and parsed schema, so that a branch record
        can be written directly, without fastavro resolving the union on every record."""
        parsed = self._writer.parsed
        fields = parsed.get("fields", [])
        if len(fields) != 1 or not isinstance(fields[0]["type"], list):
            return {}
        named = parsed["__named_schemas"]
        branches = {}
        for index, branch in enumerate(fields[0]["type"]):
            name = branch if isinstance(branch, str) else branch.get("name")
            if name in named and index < 64:
                # Avro writes a union index as a zigzag varint: one byte below 64.
                branches[name] = (bytes([index * 2]), parse_schema(named[name], named_schemas=dict(named)))
        return branches

    @property
    def writer_schema(self) -> SchemaVersion:
        return self._writer

    def _confluent_header(self) -> bytes:
        from confluent_kafka.schema_registry import Schema

        assert self._registry is not None
        try:
            schema_id = self._registry.register_schema(
                self._subject, Schema(schema_json(self._writer), "AVRO")
            )
        except Exception as exc:  # the registry's errors are many; all mean "cannot encode yet"
            raise EncodeError(f"could not register {self._subject} with the schema registry: {exc}") from exc
        return bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")

    def encode(self, record: dict[str, Any]) -> bytes:
        if self._header is None:
            self._header = self._confluent_header()
        buffer = BytesIO()
        buffer.write(self._header)
        try:
            schemaless_writer(buffer, self._writer.parsed, record)
        except Exception as exc:  # fastavro raises ValueError, TypeError, KeyError, ... for bad records
            raise EncodeError(
                f"record does not fit {self._writer.full_name} v{self._writer.version}: {exc}"
            ) from exc
        return buffer.getvalue()

    def encode_union(self, branch: str, record: dict[str, Any]) -> bytes:
        """The same bytes as ``encode({field: (branch, record)})`` for an envelope type, faster."""
        prefix, schema = self._branches[branch]
        if self._header is None:
            self._header = self._confluent_header()
        buffer = BytesIO()
        buffer.write(self._header)
        buffer.write(prefix)
        try:
            schemaless_writer(buffer, schema, record)
        except Exception as exc:
            raise EncodeError(f"record does not fit {branch}: {exc}") from exc
        return buffer.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        if not data:
            raise DecodeError(DecodeReason.TRUNCATED, "empty message")
        if data[0] == SINGLE_OBJECT_MAGIC[0]:
            writer, offset = self._single_object_writer(data), SINGLE_OBJECT_HEADER_BYTES
        elif data[0] == CONFLUENT_MAGIC:
            writer, offset = self._confluent_writer(data), CONFLUENT_HEADER_BYTES
        else:
            raise DecodeError(DecodeReason.NOT_AVRO, f"unknown first byte 0x{data[0]:02x}")
        return self._read_body(data, offset, writer)

    def _single_object_writer(self, data: bytes) -> Any:
        if len(data) >= 2 and data[:2] != SINGLE_OBJECT_MAGIC:
            raise DecodeError(DecodeReason.NOT_AVRO, "not Avro single-object encoding")
        if len(data) < SINGLE_OBJECT_HEADER_BYTES:
            raise DecodeError(DecodeReason.TRUNCATED, f"{len(data)} bytes is shorter than the header")
        fingerprint = data[2:SINGLE_OBJECT_HEADER_BYTES]
        if fingerprint == self._writer.fingerprint:
            # The same canonical form as the reader (whichever shipped version wrote it): read
            # without schema resolution, which costs fastavro about twice the plain read.
            return self._reader
        writer = self._schemas.by_fingerprint.get(fingerprint)
        if writer is None:
            raise DecodeError(
                DecodeReason.UNKNOWN_SCHEMA, f"no shipped schema has fingerprint {fingerprint.hex()}"
            )
        if writer.name != self.message_type:
            raise DecodeError(DecodeReason.WRONG_TYPE, f"a {writer.name}, not a {self.message_type}")
        return writer.parsed

    def _confluent_writer(self, data: bytes) -> Any:
        if len(data) < CONFLUENT_HEADER_BYTES:
            raise DecodeError(DecodeReason.TRUNCATED, f"{len(data)} bytes is shorter than the header")
        schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_BYTES], "big")
        writer = self._registry_writers.get(schema_id)
        if writer is not None:
            return writer
        if self._registry is None:
            raise DecodeError(
                DecodeReason.UNKNOWN_SCHEMA, f"schema id {schema_id} but no schema registry configured"
            )
        try:
            writer = parse_schema(json.loads(self._registry.get_schema(schema_id).schema_str))
        except Exception as exc:
            raise DecodeError(DecodeReason.UNKNOWN_SCHEMA, f"schema id {schema_id}: {exc}") from exc
        if writer.get("name") != self._writer.full_name:
            raise DecodeError(DecodeReason.WRONG_TYPE, f"a {writer.get('name')}, not a {self.message_type}")
        if writer_fingerprint(writer) == self._writer.fingerprint:
            writer = self._reader  # the reader's own schema: no resolution on every record
        self._registry_writers[schema_id] = writer
        return writer

    def _read_body(self, data: bytes, offset: int, writer: Any) -> dict[str, Any]:
        buffer = BytesIO(data)
        buffer.seek(offset)
        try:
            record = schemaless_reader(
                buffer,
                writer,
                None if writer is self._reader else self._reader,
                return_record_name=True,
                return_record_name_override=True,
            )
        except EOFError as exc:
            raise DecodeError(DecodeReason.TRUNCATED, "the body ends early") from exc
        except Exception as exc:  # fastavro raises many types on garbage; all mean the same here
            raise DecodeError(DecodeReason.MALFORMED, f"{type(exc).__name__}: {exc}") from exc
        if buffer.tell() != len(data):
            raise DecodeError(DecodeReason.MALFORMED, f"{len(data) - buffer.tell()} bytes after the record")
        return record


def events_codec(schema_registry_url: str | None = None, topic: str | None = None) -> AvroCodec:
    """The codec of the events topic (``TraceEvent`` records)."""
    return AvroCodec(
        "TraceEvent", schema_registry_url=schema_registry_url, subject=f"{topic}-value" if topic else None
    )


def completed_codec(schema_registry_url: str | None = None, topic: str | None = None) -> AvroCodec:
    """The codec of the completed-traces topic (``CompletedTrace`` records)."""
    return AvroCodec(
        "CompletedTrace", schema_registry_url=schema_registry_url, subject=f"{topic}-value" if topic else None
    )


def alerts_codec(schema_registry_url: str | None = None, topic: str | None = None) -> AvroCodec:
    """The codec of the alerts topic (``TraceAlert`` records)."""
    return AvroCodec(
        "TraceAlert", schema_registry_url=schema_registry_url, subject=f"{topic}-value" if topic else None
    )


def rule_alerts_codec(schema_registry_url: str | None = None, topic: str | None = None) -> AvroCodec:
    """The codec of the alerts topic's ``RuleAlert`` records (an alert rule firing or resolving).

    They share the alerts topic with ``TraceAlert``: each record names its writer schema, so a
    ``TraceAlert`` reader gets ``DecodeError(WRONG_TYPE)`` for them and skips them. With a schema
    registry the subject is ``<topic>-io.tracestream.RuleAlert`` (the record-name strategy), since
    the topic's ``<topic>-value`` subject holds ``TraceAlert``.
    """
    return AvroCodec(
        "RuleAlert",
        schema_registry_url=schema_registry_url,
        subject=f"{topic}-io.tracestream.RuleAlert" if topic else None,
    )


def dead_letters_codec(schema_registry_url: str | None = None, topic: str | None = None) -> AvroCodec:
    """The codec of the dead-letter topic (``DeadLetter`` records)."""
    return AvroCodec(
        "DeadLetter", schema_registry_url=schema_registry_url, subject=f"{topic}-value" if topic else None
    )
