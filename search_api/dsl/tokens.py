"""Tokenizer for MLflow's search filter language.

Token boundaries follow sqlparse's lexer (which MLflow uses), so that the same text splits into
the same pieces: string literals may contain ``''`` or ``\\'`` without ending (their text is kept
verbatim, there is no escape processing), runs of ``<>=!~`` form one operator token (``<>``, ``==``
tokenise and are rejected later with MLflow's message), numbers are sqlparse's integer and float forms.

An identifier such as ``tags.env``, ``metadata.`mlflow.user` `` or ``span.attributes."a.b"`` is one
``IDENT`` token: a word, backtick or double-quoted head, then one or more ``.``-separated parts.
"""

from __future__ import annotations

import re
from enum import IntEnum, auto
from typing import NamedTuple


class TokenType(IntEnum):  # IntEnum: hashed in C, the parser does many set lookups
    IDENT = auto()
    BACKTICK = auto()
    STRING = auto()
    DSTRING = auto()
    NUMBER = auto()
    OP = auto()
    AND = auto()
    OR = auto()
    NOT = auto()
    LIKE = auto()
    ILIKE = auto()
    RLIKE = auto()
    IN = auto()
    IS = auto()
    NULL = auto()
    TRUE = auto()
    FALSE = auto()
    LPAREN = auto()
    RPAREN = auto()
    COMMA = auto()
    SEMICOLON = auto()
    UNKNOWN = auto()
    UNCLOSED = auto()  # a quote without its closing partner
    EOF = auto()


class Token(NamedTuple):
    type: TokenType
    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


KEYWORDS: dict[str, TokenType] = {
    "AND": TokenType.AND,
    "OR": TokenType.OR,
    "NOT": TokenType.NOT,
    "LIKE": TokenType.LIKE,
    "ILIKE": TokenType.ILIKE,
    "RLIKE": TokenType.RLIKE,
    "IN": TokenType.IN,
    "IS": TokenType.IS,
    "NULL": TokenType.NULL,
    "TRUE": TokenType.TRUE,
    "FALSE": TokenType.FALSE,
}

_WORD = r"[^\W\d]\w*"
_SQ = r"'(?:''|\\'|[^'])*'"
_DQ = r'"(?:""|\\"|[^"])*"'
_BT = r"`(?:``|[^`])*`"
# sqlparse ends an identifier before a part it reads as a number (`tags.0` is `tags` and `.0`; only
# one digit then a letter survives) and before the keywords it matches ahead of names (`tags.in`),
# so MLflow rejects those keys unquoted; so do we.
_SQL_LETTER = r"(?i:[_A-ZÀ-Ü])"  # sqlparse's letter class, which its number patterns stop at
BARE_PART = (
    rf"(?!(?i:case|in|values|using|from|as)\b)(?!\d[eE]-?\d|0[xX][0-9a-fA-F])(?:[^\W\d]|\d{_SQL_LETTER})\w*"
)
_PART = rf"(?:{_BT}|{_SQ}|{_DQ}|{BARE_PART})"

_TOKEN_RE = re.compile(
    "|".join(
        (
            r"(?P<ws>\s+)",
            rf"(?P<word>{_WORD}(?:\.{_PART}?)*)",  # a dotted word is an identifier
            rf"(?P<string>{_SQ})",
            rf"(?P<number>-?\d+(?:\.\d+)?[eE]-?\d+|-?(?:\d+\.\d*|\.\d+|\d+)(?!{_SQL_LETTER}))",
            r"(?P<op>[<>=~!]+)",
            r"(?P<lparen>\()",
            r"(?P<rparen>\))",
            r"(?P<comma>,)",
            rf"(?P<ident>(?:{_BT}|{_DQ})(?:\.{_PART}?)+)",
            rf"(?P<dstring>{_DQ})",
            rf"(?P<backtick>{_BT})",
            r"(?P<semicolon>;)",
            r"(?P<unclosed>['\"`])",
            r"(?P<unknown>[^\s'\"`(),;<>=!~]+)",
        )
    )
)

_GROUP_TYPES: dict[str, TokenType] = {
    "ident": TokenType.IDENT,
    "string": TokenType.STRING,
    "dstring": TokenType.DSTRING,
    "backtick": TokenType.BACKTICK,
    "number": TokenType.NUMBER,
    "op": TokenType.OP,
    "lparen": TokenType.LPAREN,
    "rparen": TokenType.RPAREN,
    "comma": TokenType.COMMA,
    "semicolon": TokenType.SEMICOLON,
    "unknown": TokenType.UNKNOWN,
    "unclosed": TokenType.UNCLOSED,
}

INT_RE = re.compile(r"-?\d+")
NUMBER_RE = re.compile(r"-?(?:\d+(?:\.\d+)?[eE]-?\d+|\d+\.\d*|\.\d+|\d+)")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens (whitespace dropped), ending with an ``EOF`` token."""
    tokens: list[Token] = []
    append = tokens.append
    # The alternatives cover every character, so the matches are contiguous.
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        if kind == "ws":
            continue
        value = m.group()
        if kind == "word":
            token_type = TokenType.IDENT if "." in value else KEYWORDS.get(value.upper(), TokenType.IDENT)
            append(Token(token_type, value, m.start()))
        else:
            append(Token(_GROUP_TYPES[kind], value, m.start()))  # type: ignore[index]
    append(Token(TokenType.EOF, "", len(text)))
    return tokens


def parse_number(text: str) -> int | float:
    return int(text) if INT_RE.fullmatch(text) else float(text)
