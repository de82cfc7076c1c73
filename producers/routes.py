"""Finding ``@trace`` placed above a web framework's route decorator.

FastAPI's ``@app.post("/chat")`` (Starlette's and other routers' too) registers the function it
is given and returns it unchanged. With ``@trace`` written above it, the route holds the
undecorated function and ``@trace``'s wrapper is never called: nothing is traced. This module
notices it, without importing any framework:

* when ``@trace`` wraps a function while a Starlette-based framework is loaded, it looks for a
  router among the decorating module's globals (``app``, ``router``) whose routes hold that
  function;
* ``instrument_fastapi`` and :class:`~tracestream.producers.asgi.TracingMiddleware` look through
  the app's routes for functions ``@trace`` wrapped (at instrumentation and on the first request).

Each such function is warned about once, with the fix.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any


class MisplacedTraceDecoratorWarning(UserWarning):
    """``@trace`` above a route decorator: the route calls the undecorated function."""


# Functions @trace wrapped (the originals), while a web framework was loaded.
_traced: weakref.WeakKeyDictionary[Callable[..., Any], bool] = weakref.WeakKeyDictionary()
_warned: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()

_FRAMEWORKS = ("starlette", "fastapi")
_MAX_DEPTH = 8


def _framework_loaded() -> bool:
    modules = sys.modules
    return any(name in modules for name in _FRAMEWORKS)


def _is_router(value: object) -> bool:
    """An instance of a Starlette-based app or router (FastAPI, APIRouter, Starlette, Router)."""
    if isinstance(value, type):
        return False
    return any(
        (getattr(klass, "__module__", "") or "").split(".")[0] in _FRAMEWORKS for klass in type(value).__mro__
    )


def _route_endpoints(app: object, depth: int = 0) -> Iterator[Callable[..., Any]]:
    """The endpoint functions of an app or router's routes, mounted apps and routers included."""
    if depth > _MAX_DEPTH:
        return
    try:
        routes = list(getattr(app, "routes", None) or ())
    except Exception:
        return
    for route in routes:
        endpoint = getattr(route, "endpoint", None)
        if callable(endpoint):
            yield endpoint
        mounted = getattr(route, "app", None)
        if mounted is not None and mounted is not app and getattr(route, "routes", None):
            yield from _route_endpoints(route, depth + 1)


def _warn(function: Callable[..., Any], stacklevel: int) -> None:
    try:
        if function in _warned:
            return
        _warned.add(function)
    except TypeError:
        return
    name = getattr(function, "__qualname__", repr(function))
    code = getattr(function, "__code__", None)
    where = f" ({code.co_filename}:{code.co_firstlineno})" if code is not None else ""
    warnings.warn(
        f"@trace is above the route decorator of {name}{where}: the framework registered the "
        "undecorated function, so its requests are not traced. Swap the two decorators, the "
        "route decorator on top:\n"
        '    @app.post("/chat")\n'
        "    @mlflow.trace\n"
        f"    def {getattr(function, '__name__', 'handler')}(...): ...\n"
        "or trace every request with tracestream.producers.instrument_fastapi(app).",
        MisplacedTraceDecoratorWarning,
        stacklevel=stacklevel + 1,
    )


def note_traced(function: Callable[..., Any], caller_globals: dict[str, Any] | None, stacklevel: int) -> None:
    """Called by ``@trace`` for each function it wraps. Cheap when no framework is loaded."""
    if not _framework_loaded():
        return
    try:
        _traced[function] = True
    except TypeError:  # not weak-referenceable (a builtin): cannot be a misplaced handler
        return
    for value in list((caller_globals or {}).values()):
        if _is_router(value) and any(endpoint is function for endpoint in _route_endpoints(value)):
            _warn(function, stacklevel + 1)
            return


def check_app(app: object, stacklevel: int = 2) -> None:
    """Warn about each route endpoint of ``app`` that ``@trace`` wrapped after it was registered."""
    for endpoint in _route_endpoints(app):
        try:
            if endpoint in _traced:
                _warn(endpoint, stacklevel + 1)
        except TypeError:
            continue
