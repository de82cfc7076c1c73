"""The exceptions of the filter / order_by language: one root, :class:`FilterError`, with a
subclass per stage (as sqlglot's ``SqlglotError`` -> ``ParseError`` / ``UnsupportedError``).

The tokenizer never raises: a character or an unclosed quote it cannot read becomes an
``UNKNOWN`` / ``UNCLOSED`` token, which the parser reports with MLflow's message for it.
"""

from __future__ import annotations

INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
BAD_REQUEST = "BAD_REQUEST"


class FilterError(ValueError):
    """A filter string or an order_by clause that cannot be used.

    ``message`` is MLflow's text wherever MLflow has one for the same input, so clients that match
    on it keep working. ``position`` is the character offset of the offending token in the filter
    string (``None`` for order_by clauses and whole-input errors), ``token`` its text.
    ``error_code`` is the MLflow error code to answer with. ``source`` is the filter string, when
    the stage that raised knew it (``parse_filter`` sets it); :meth:`highlight` points into it.
    """

    __slots__ = ("error_code", "message", "position", "source", "token")

    def __init__(
        self,
        message: str,
        position: int | None = None,
        token: str | None = None,
        error_code: str = INVALID_PARAMETER_VALUE,
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.token = token
        self.error_code = error_code
        self.source = source

    def __str__(self) -> str:
        if self.position is None:
            return self.message
        return f"{self.message} (at position {self.position})"

    def highlight(self, source: str | None = None) -> str | None:
        """The line of the filter (``source``, else :attr:`source`) holding the position, and under
        it a caret line marking the offending token; ``None`` without a position or a filter."""
        text = source if source is not None else self.source
        if self.position is None or text is None or not 0 <= self.position <= len(text):
            return None
        return caret_lines(text, self.position, self.token)

    def __reduce__(self) -> tuple[type[FilterError], tuple[str, int | None, str | None, str, str | None]]:
        # The parser's private subclasses take other arguments: they pickle as the public class.
        public = next(c for c in type(self).__mro__ if not c.__name__.startswith("_"))
        return (public, (self.message, self.position, self.token, self.error_code, self.source))


class ParseError(FilterError):
    """Input the language does not accept (MLflow rejects it too, with the same message)."""

    __slots__ = ()


class UnsupportedError(FilterError):
    """A filter the parser accepts that a backend cannot run: a node or a comparator it has no
    translation for, or an RLIKE construct without an equivalent in the engine's regexes."""

    __slots__ = ()


def caret_lines(text: str, position: int, token: str | None = None) -> str:
    """``text``'s line holding ``position`` and a line of carets under the token there (one caret
    when the token is unknown or is not what the text holds at that position)."""
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    line = text[start : end if end != -1 else len(text)]
    width = len(token) if token and text.startswith(token, position) else 1
    width = max(1, min(width, len(line) - (position - start)))
    # Tabs stay tabs in the padding, so the caret lines up however the tabs are shown.
    padding = "".join("\t" if char == "\t" else " " for char in line[: position - start])
    return f"{line}\n{padding}{'^' * width}"
