"""Trace assembly: a Faust app turning span and trace events into completed traces."""

from tracestream.stream.agents import TraceAssembler as TraceAssembler
from tracestream.stream.derive import assemble as assemble
from tracestream.stream.worker import create_app as create_app
from tracestream.stream.worker import run_worker as run_worker

__all__ = ["TraceAssembler", "assemble", "create_app", "run_worker"]
