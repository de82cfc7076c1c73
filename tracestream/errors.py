"""What the `tracestream` command tells its user when a command fails: the one mapping from the
errors of the settings, the servers, the files and the search client to a short message and an
exit code. The traceback is for `tracestream --debug` (or TRACESTREAM_DEBUG=1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click
import typer
from confluent_kafka import KafkaException
from opensearchpy.exceptions import AuthenticationException, AuthorizationException, TransportError
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from pydantic import ValidationError
from typer.core import TyperGroup

from tracestream.admin import AdminError, KafkaUnreachableError
from tracestream.search_api.client import TraceSearchError
from tracestream.settings import ENV_PREFIX, describe_settings_error

# Exit codes: 2 is also what click gives a usage error.
EXIT_FAILED = 1
EXIT_CONFIGURATION = 2
DEBUG_KEY = "tracestream.debug"

KAFKA_ADDRESS_VAR = f"{ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS"
OPENSEARCH_URL_VAR = f"{ENV_PREFIX}OPENSEARCH__URL"
DEBUG_HINT = "run with --debug for the traceback"


# Usage errors (an unknown option, a bad value) are click's to show with the usage line. Recent
# Typer releases carry their own copy of click, whose errors are not click's: take both.
CLICK_ERRORS: tuple[type[Exception], ...] = tuple(
    {click.ClickException, *(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")}
)


@dataclass(frozen=True)
class UserError:
    message: str
    exit_code: int


def _opensearch_url() -> str:
    from tracestream.settings import get_settings

    try:
        return get_settings().opensearch.url
    except ValidationError:
        return f"the URL in {OPENSEARCH_URL_VAR}"


def _root_reason(error: BaseException, fallback: str) -> str:
    """The innermost OS error's words ("Connection refused"), not urllib3's nested reprs."""
    seen: BaseException | None = error
    reason = fallback
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            reason = seen.strerror
        seen = seen.__cause__ or seen.__context__
    return reason


def describe(error: BaseException) -> UserError:
    """The message and exit code for a command that failed with ``error``."""
    if isinstance(error, ValidationError) and error.title == "Settings":
        return UserError(
            f"invalid setting: {describe_settings_error(error)}\n"
            "Fix the environment variable (or the .env file) and run the command again.",
            EXIT_CONFIGURATION,
        )
    if isinstance(error, KafkaUnreachableError):
        return UserError(
            f"Kafka is unreachable at {error.address} ({error.reason}).\n"
            f"Start it with infra/up, or point {KAFKA_ADDRESS_VAR} at your brokers.",
            EXIT_FAILED,
        )
    if isinstance(error, AdminError):
        return UserError(f"Kafka: {error}", EXIT_FAILED)
    if isinstance(error, KafkaException):
        return UserError(f"Kafka: {error.args[0].str() if error.args else error}", EXIT_FAILED)
    if isinstance(error, OpenSearchConnectionError):
        info: Any = error.info
        reason = _root_reason(info if isinstance(info, BaseException) else error, str(error.error))
        return UserError(
            f"OpenSearch is unreachable at {_opensearch_url()} ({reason}).\n"
            f"Start it with infra/up, or point {OPENSEARCH_URL_VAR} at your cluster.",
            EXIT_FAILED,
        )
    if isinstance(error, AuthenticationException | AuthorizationException):
        return UserError(
            f"OpenSearch at {_opensearch_url()} refused the credentials ({error.status_code}).\n"
            f"Check {ENV_PREFIX}OPENSEARCH__USERNAME and {ENV_PREFIX}OPENSEARCH__PASSWORD.",
            EXIT_FAILED,
        )
    if isinstance(error, TransportError):
        return UserError(
            f"OpenSearch at {_opensearch_url()} answered {error.status_code}: {error.error}", EXIT_FAILED
        )
    if isinstance(error, TraceSearchError):
        return UserError(str(error), EXIT_CONFIGURATION if error.is_usage_error else EXIT_FAILED)
    if isinstance(error, OSError) and error.filename is not None:
        return UserError(f"{error.filename}: {error.strerror or error}", EXIT_FAILED)
    return UserError(f"unexpected error: {type(error).__name__}: {error} ({DEBUG_HINT})", EXIT_FAILED)


class ErrorReportingGroup(TyperGroup):
    """The `tracestream` group: a command that fails prints what went wrong and what to do, in
    a line or two on stderr, instead of a traceback; ``--debug`` lets the exception through."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (*CLICK_ERRORS, click.exceptions.Exit, click.Abort, typer.Exit, typer.Abort):
            raise
        except Exception as error:
            if ctx.meta.get(DEBUG_KEY):
                raise
            described = describe(error)
            typer.echo(f"error: {described.message}", err=True)
            raise typer.Exit(described.exit_code) from error
