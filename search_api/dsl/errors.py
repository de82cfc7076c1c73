"""The one exception type of the filter / order_by front end."""

from __future__ import annotations

INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
BAD_REQUEST = "BAD_REQUEST"


class FilterError(ValueError):
    """A filter string or an order_by clause that cannot be used.

    ``message`` is MLflow's text wherever MLflow has one for the same input, so clients that match
    on it keep working. ``position`` is the character offset of the offending token in the filter
    string (``None`` for order_by clauses and whole-input errors), ``token`` its text.
    ``error_code`` is the MLflow error code to answer with.
    """

    __slots__ = ("error_code", "message", "position", "token")

    def __init__(
        self,
        message: str,
        position: int | None = None,
        token: str | None = None,
        error_code: str = INVALID_PARAMETER_VALUE,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.token = token
        self.error_code = error_code

    def __str__(self) -> str:
        if self.position is None:
            return self.message
        return f"{self.message} (at position {self.position})"

    def __reduce__(self) -> tuple[type[FilterError], tuple[str, int | None, str | None, str]]:
        return (FilterError, (self.message, self.position, self.token, self.error_code))
