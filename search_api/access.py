"""Who is calling and what they may do: a :class:`Principal` (an API key's name, its rights and
the experiments they apply to), resolved once per request by the auth dependency
(search_api.auth) and read by the routes through :data:`PrincipalDep`.

Rights, as MLflow's and Langfuse's keys draw them: ``ingest`` (OTLP, StartTraceV3, tags,
assessments, links), ``read`` (search, get, export, the web page), ``delete``, and ``admin``
(every right, and managing keys). Without any key configured the API is open: every request
is :data:`OPEN`, as it was before keys had scopes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request

from tracestream.search_api.search import SearchError


class Right(StrEnum):
    INGEST = "ingest"
    READ = "read"
    DELETE = "delete"
    ADMIN = "admin"


ALL_EXPERIMENTS = "*"


def permission_denied(message: str) -> SearchError:
    """MLflow's answer to a call its key may not make (HTTP 403, ``PERMISSION_DENIED``)."""
    return SearchError(403, "PERMISSION_DENIED", message)


@dataclass(frozen=True, slots=True)
class Principal:
    """A caller: ``experiments`` None means every experiment."""

    name: str
    rights: frozenset[Right]
    experiments: frozenset[str] | None

    def may(self, right: Right, experiment_id: str | None = None) -> bool:
        """Whether the caller has ``right`` (on ``experiment_id``, when given)."""
        if right not in self.rights and Right.ADMIN not in self.rights:
            return False
        return experiment_id is None or self.experiments is None or experiment_id in self.experiments

    def require(self, right: Right, experiment_id: str | None = None) -> None:
        """Raises MLflow's PERMISSION_DENIED unless :meth:`may`; the message names only what was
        asked, nothing about other experiments."""
        if not self.may(right, experiment_id):
            where = f" on experiment {experiment_id}" if experiment_id is not None else ""
            raise permission_denied(f"API key '{self.name}' may not {right.value}{where}")

    def scope(self, right: Right, requested: Iterable[str] | None) -> list[str] | None:
        """The experiments a search or export with ``right`` may cover: the requested ones the
        caller may use, or all the caller may use when none were requested (None: unrestricted).
        An empty list means nothing may be read; the query must then match nothing."""
        if right not in self.rights and Right.ADMIN not in self.rights:
            raise permission_denied(f"API key '{self.name}' may not {right.value}")
        if self.experiments is None:
            return None if requested is None else list(requested)
        if requested is None:
            return sorted(self.experiments)
        return [experiment for experiment in requested if experiment in self.experiments]


OPEN = Principal("open", frozenset(Right), None)


def current_principal(request: Request) -> Principal:
    """The caller the auth dependency resolved for this request; :data:`OPEN` when the API has
    no keys (the dependency then does not run)."""
    return getattr(request.state, "principal", OPEN)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
