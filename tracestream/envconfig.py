"""Configuration from ``TRACESTREAM_*`` environment variables with the standard library only.

The instrumentation SDK reads its settings with this, so an application that only emits spans
needs neither pydantic nor the servers' settings tree. Variable names are the ones the servers'
settings (``tracestream.settings``) use: ``TRACESTREAM_<GROUP>__<FIELD>``, read from the
environment first and then from a ``.env`` file in the working directory; empty values count
as unset.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

ENV_PREFIX = "TRACESTREAM_"

Config = TypeVar("Config")

_TRUE = {"1", "true", "yes", "on", "t", "y"}
_FALSE = {"0", "false", "no", "off", "f", "n"}


class ConfigError(ValueError):
    """A setting that cannot be used, named by the variable that sets it."""

    def __init__(self, variable: str, problem: str, given: str | None = None) -> None:
        self.variable = variable
        self.problem = problem
        self.given = given
        shown = f" (got {given!r})" if given is not None else ""
        super().__init__(f"{variable}: {problem}{shown}")


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None) -> Any:
    """A dataclass field with a lower bound that :func:`load` checks."""
    return dataclasses.field(default=default, metadata={"ge": ge, "gt": gt})


def secret(default: str | None = None) -> Any:
    """A dataclass field left out of the repr, so a logged config shows no password."""
    return dataclasses.field(default=default, repr=False)


def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a .env file (``export`` prefixes, quotes and comments allowed).
    A missing file is no settings; an unreadable one raises OSError."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


def environment(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> dict[str, str]:
    """The ``TRACESTREAM_*`` variables in effect, upper-cased: the process environment over a
    ``.env`` file (``./.env`` by default), empty values dropped."""
    merged = {
        **read_dotenv(dotenv if dotenv is not None else Path(".env")),
        **(os.environ if environ is None else environ),
    }
    upper = {key.upper(): value for key, value in merged.items()}
    return {key: value for key, value in upper.items() if key.startswith(ENV_PREFIX) and value != ""}


def variable_name(group: str, field: str) -> str:
    return f"{ENV_PREFIX}{group.upper()}__{field.upper()}"


def load(cls: type[Config], group: str, variables: Mapping[str, str]) -> Config:
    """An instance of the dataclass ``cls`` from the variables of ``group``; fields without a
    variable keep their defaults. Raises :class:`ConfigError` naming the first bad variable."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = variable_name(group, field.name)
        if name in variables:
            values[field.name] = _convert(name, variables[name], hints[field.name], field.metadata)
    return cls(**values)


def check_bounds(instance: Any, group: str) -> None:
    """Raise :class:`ConfigError` for a field below its :func:`bounded` limit (also for values
    given in code rather than by a variable)."""
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        ge, gt = field.metadata.get("ge"), field.metadata.get("gt")
        name = variable_name(group, field.name)
        if ge is not None and value < ge:
            raise ConfigError(name, f"must be at least {ge}", str(value))
        if gt is not None and value <= gt:
            raise ConfigError(name, f"must be greater than {gt}", str(value))


def _convert(name: str, text: str, hint: Any, metadata: Mapping[str, Any]) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        hint = options[0]
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if text not in choices:
            raise ConfigError(name, "must be one of " + ", ".join(map(str, choices)), text)
        return text
    if hint is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(name, "must be true or false", text)
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise ConfigError(name, f"must be {'an integer' if hint is int else 'a number'}", text) from None
    return text
