"""``mlflow.tracing``'s switches: ``disable()`` and ``enable()``.

``from tracestream import producers as mlflow`` then ``mlflow.tracing.disable()``: traced functions
run untraced (no spans, no events) until ``mlflow.tracing.enable()``. Assessments and tags are
still sent. ``TRACESTREAM_SDK__ENABLED=false`` turns tracing off for the whole process instead.
"""

from __future__ import annotations

from tracestream.producers import provider as _provider


def disable() -> None:
    """Stop tracing: spans started from now on are no-ops."""
    _provider.set_paused(True)


def enable() -> None:
    """Trace again after :func:`disable`."""
    _provider.set_paused(False)


def is_tracing_enabled() -> bool:
    """False after :func:`disable`, or when the settings turn tracing off."""
    return not _provider._paused and _provider.get_provider() is not None


__all__ = ["disable", "enable", "is_tracing_enabled"]
