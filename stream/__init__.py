"""Trace assembly: a Faust app turning span and trace events into completed traces."""

from tracestream.stream.app import TraceAssembler as TraceAssembler
from tracestream.stream.app import create_app as create_app
from tracestream.stream.app import run_worker as run_worker
from tracestream.stream.derive import assemble as assemble

__all__ = ["TraceAssembler", "assemble", "create_app", "run_worker"]
