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


#: Most significant tokens (words, numbers, literals, punctuation) in a query.
MAX_TOKENS = 10_000
#: Most parenthesis levels (subqueries, function calls, grouping) in a query.
MAX_DEPTH = 25
#: Most chained binary operators (``+ - * / || AND OR``) in one expression.
MAX_CHAIN = 200
#: Largest estimated depth of the translator's recursion, in Python frames: a
#: parenthesis level costs :data:`_LEVEL_COST`, each operator of a chain
#: :data:`_OP_COST` (left-recursive rules nest one tree level per operator).
#: Python stops at 1,000 frames; the web server and Flask need up to ~150.
MAX_NESTING = 800
_LEVEL_COST = 20
_OP_COST = 4
_CHAIN_WORDS = frozenset({"AND", "OR"})
_CHAIN_PUNCT = frozenset({"+", "-", "*", "/", "||"})
#: Words that start a new expression (a new clause of a query).
_CLAUSE_WORDS = frozenset({"SELECT", "FROM", "WHERE", "GROUP", "HAVING", "ORDER",
                           "ON", "JOIN", "UNION", "BY", "OFFSET", "TOP"})


@dataclass
class _Level:
    """One parenthesis level of the nesting scan."""

    start: int
    ops: int = 0
    inner: int = 0
    best: int = 0

    def close_expression(self) -> None:
        self.best = max(self.best, _OP_COST * self.ops + self.inner)
        self.ops = self.inner = 0


def check_size(tokens: list[Token]) -> None:
    """Refuse a query too large or too deeply nested to parse safely.

    A linear scan before parsing: the parser and the translator recurse once
    per level of the parse tree, so a few hundred nested parentheses or a
    thousand-term sum would exhaust the stack (or the CPU) inside them.

    Parameters
    ----------
    tokens
        The significant tokens of the query (no white space).

    Raises
    ------
    TokenError
        With the first offending token's offset.
    """
    if len(tokens) > MAX_TOKENS:
        raise TokenError(f"the query has more than {MAX_TOKENS} tokens",
                         tokens[MAX_TOKENS].start)
    stack = [_Level(0)]
    for t in tokens:
        level = stack[-1]
        word = t.text.upper() if t.kind is Kind.WORD else None
        if t.kind is Kind.PUNCT and t.text == "(":
            if len(stack) > MAX_DEPTH:
                raise TokenError(f"the query nests parentheses more than {MAX_DEPTH} "
                                 "deep", t.start)
            stack.append(_Level(t.start))
        elif t.kind is Kind.PUNCT and t.text == ")" and len(stack) > 1:
            stack.pop()
            level.close_expression()
            parent = stack[-1]
            parent.inner = max(parent.inner, _LEVEL_COST + level.best)
        elif (t.kind is Kind.PUNCT and t.text == ",") or word in _CLAUSE_WORDS:
            level.close_expression()
        elif (t.kind is Kind.PUNCT and t.text in _CHAIN_PUNCT) or \
                word in _CHAIN_WORDS:
            level.ops += 1
            if level.ops > MAX_CHAIN:
                raise TokenError(f"an expression chains more than {MAX_CHAIN} "
                                 "operators", t.start)
        else:
            continue
        estimate = sum(_OP_COST * lv.ops + lv.inner for lv in stack) + \
            _LEVEL_COST * (len(stack) - 1)
        if estimate > MAX_NESTING:
            raise TokenError(
                "the query's expressions are nested too deeply (at most "
                f"{MAX_DEPTH} parentheses, {MAX_CHAIN} operators in a row)", t.start)
