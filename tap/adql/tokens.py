"""A small ADQL tokenizer used to vet and normalise queries before parsing.

queryparser's ADQL grammar is used for parsing and translation; this module
handles what happens around it: comments (ADQL 2.1 §2.1.3), statement
separators, string literals (which queryparser's output formatting would
alter), approximate numbers with an integer mantissa (``1E-3``, which its
lexer rejects), and the three-argument ``CIRCLE(ra, dec, r)`` with column
arguments (which it only accepts as ``CIRCLE(POINT(ra, dec), r)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):  # noqa: UP042 - StrEnum changes str() of members
    """Token kinds."""

    SPACE = "space"
    STRING = "string"
    DELIMITED = "delimited"
    NUMBER = "number"
    WORD = "word"
    PUNCT = "punct"


@dataclass(frozen=True, slots=True)
class Token:
    """A token of the query text and its offset."""

    kind: Kind
    text: str
    start: int


class TokenError(Exception):
    """The text cannot be split into ADQL tokens."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


_PATTERNS = [
    (Kind.SPACE, re.compile(r"(?:\s+|--[^\n]*)+")),
    (Kind.STRING, re.compile(r"'(?:[^']|'')*'")),
    (Kind.DELIMITED, re.compile(r'"(?:[^"]|"")+"')),
    (Kind.NUMBER, re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")),
    (Kind.WORD, re.compile(r"[A-Za-z_][A-Za-z0-9_]*")),
    (Kind.PUNCT, re.compile(r"<=|>=|<>|!=|\|\||[^\sA-Za-z0-9_'\"]")),
]


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; comments become white space.

    Raises
    ------
    TokenError
        On an unterminated string literal or delimited identifier.
    """
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        for kind, pattern in _PATTERNS:
            m = pattern.match(text, pos)
            if m:
                chunk = m.group(0)
                if kind is Kind.SPACE:
                    chunk = " "
                out.append(Token(kind, chunk, pos))
                pos = m.end()
                break
        else:
            what = "string literal" if text[pos] == "'" else "quoted identifier"
            raise TokenError(f"unterminated {what}", pos)
    return out


def split_args(tokens: list[Token], open_index: int) -> tuple[list[list[Token]], int]:
    """Return the top-level arguments of the call whose ``(`` is at ``open_index``.

    Returns the argument token lists (white space included) and the index of
    the closing parenthesis, or ``-1`` when it is missing.
    """
    args: list[list[Token]] = [[]]
    depth = 0
    for i in range(open_index + 1, len(tokens)):
        t = tokens[i]
        if t.kind is Kind.PUNCT and t.text == "(":
            depth += 1
        elif t.kind is Kind.PUNCT and t.text == ")":
            if depth == 0:
                return args, i
            depth -= 1
        elif t.kind is Kind.PUNCT and t.text == "," and depth == 0:
            args.append([])
            continue
        args[-1].append(t)
    return args, -1
