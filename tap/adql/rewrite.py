"""ADQL 2.1 constructs written around queryparser's grammar, which lacks them.

Each construct is rewritten in the tokens into something the grammar parses,
then written back in the translated SQL:

- ``CAST(x AS type)`` (ADQL 2.1 §4.9) becomes a call of a placeholder
  function ``zqfncastN(x)``, written back as ``CAST(x AS type)``;
- ``IN_UNIT(x, 'unit')`` (§4.6) becomes ``zqfninunitN(x)``, written back as
  ``((x) * factor)`` once the column's unit is known;
- ``EXCEPT`` and ``INTERSECT`` (§4.11) pass as ``UNION`` and are named back in
  order (the text keeps its operators, so PostgreSQL applies SQL's own
  precedence, which ADQL shares);
- ``WITH name AS (query)`` (§4.12) becomes a derived table ``(query) AS name``
  wherever ``name`` is a table of a FROM clause.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tap.adql.tokens import Kind, Token, split_args

#: Words that end a FROM clause at its level of parentheses.
_FROM_ENDS = frozenset({"WHERE", "GROUP", "ORDER", "HAVING", "UNION", "EXCEPT",
                        "INTERSECT", "OFFSET", "LIMIT"})
#: Words that may follow a table without being its alias.
_NOT_ALIAS = frozenset({"AS", "JOIN", "INNER", "LEFT", "RIGHT", "FULL", "OUTER",
                        "NATURAL", "CROSS", "ON", "USING"}) | _FROM_ENDS


class RewriteError(Exception):
    """A construct written wrongly; ``offset`` is in the original query."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def _significant(tokens: list[Token], i: int, step: int = 1) -> int:
    """Return the index of the next (``step=-1``: previous) non-space token."""
    i += step
    while 0 <= i < len(tokens) and tokens[i].kind is Kind.SPACE:
        i += step
    return i


def _word(tokens: list[Token], i: int) -> str:
    if 0 <= i < len(tokens) and tokens[i].kind is Kind.WORD:
        return tokens[i].text.upper()
    return ""


def _punct(tokens: list[Token], i: int, text: str) -> bool:
    return (0 <= i < len(tokens) and tokens[i].kind is Kind.PUNCT
            and tokens[i].text == text)


def _matching(tokens: list[Token], open_index: int) -> int:
    _, close = split_args(tokens, open_index)
    if close < 0:
        raise RewriteError("unbalanced parentheses", tokens[open_index].start)
    return close


# -- CAST ----------------------------------------------------------------------


def rename_casts(tokens: list[Token], types: dict[str, str]
                 ) -> tuple[list[Token], list[str]]:
    """Replace each ``CAST(x AS type)`` by ``zqfncastN(x)``; return the types.

    ``types`` maps ADQL type names to PostgreSQL's; CHAR and VARCHAR may carry
    a length.
    """
    out = list(tokens)
    found: list[str] = []
    i = 0
    while i < len(out):
        t = out[i]
        j = _significant(out, i)
        if t.kind is Kind.WORD and t.text.upper() == "CAST" and _punct(out, j, "("):
            close = _matching(out, j)
            depth, as_at = 0, -1
            for k in range(j + 1, close):
                if _punct(out, k, "("):
                    depth += 1
                elif _punct(out, k, ")"):
                    depth -= 1
                elif depth == 0 and _word(out, k) == "AS":
                    as_at = k
            if as_at < 0:
                raise RewriteError("CAST needs 'AS type'", t.start)
            target = " ".join(x.text for x in out[as_at + 1:close]
                              if x.kind is not Kind.SPACE)
            found.append(_cast_type(target, types, out[as_at].start))
            out[i] = Token(Kind.WORD, f"zqfncast{len(found) - 1}", t.start)
            out[as_at:close] = []
        i += 1
    return out, found


def _cast_type(target: str, types: dict[str, str], offset: int) -> str:
    m = re.fullmatch(r"(?i)([a-z]+(?: precision)?)(?: \( (\d{1,5}) \))?", target)
    name = m.group(1).upper() if m else ""
    if not m or name not in types:
        raise RewriteError(f"CAST to {target!r} is not supported (types: "
                           f"{', '.join(types)})", offset)
    if m.group(2) and name not in ("CHAR", "VARCHAR"):
        raise RewriteError(f"CAST to {name} takes no length", offset)
    return types[name] + (f"({int(m.group(2))})" if m.group(2) else "")


def _calls(sql: str, prefix: str) -> re.Match[str] | None:
    return re.search(rf"\b{prefix}(\d+)\s*\(", sql)


def restore_calls(sql: str, prefix: str,
                  write: Callable[[int, str], str]) -> str:
    """Rewrite each ``<prefix>N(args)`` of ``sql`` as ``write(N, args)``."""
    while (m := _calls(sql, prefix)) is not None:
        depth, end = 0, -1
        for k in range(m.end() - 1, len(sql)):
            if sql[k] == "(":
                depth += 1
            elif sql[k] == ")":
                depth -= 1
                if depth == 0:
                    end = k
                    break
        if end < 0:  # the translator wrote unbalanced text: refuse it
            raise RewriteError("query cannot be translated", 0)
        sql = sql[:m.start()] + write(int(m.group(1)), sql[m.end():end]) \
            + sql[end + 1:]
    return sql


# -- IN_UNIT -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnitCall:
    """An ``IN_UNIT`` call: the column it converts and the unit wanted."""

    column: str
    unit: str
    offset: int


def rename_in_units(tokens: list[Token], literal: Callable[[str], str]
                    ) -> tuple[list[Token], list[UnitCall]]:
    """Replace each ``IN_UNIT(col, 'unit')`` by ``zqfninunitN(col)``.

    ``literal`` gives the text of a string literal token (literals are
    placeholders by then).
    """
    out = list(tokens)
    calls: list[UnitCall] = []
    i = 0
    while i < len(out):
        t = out[i]
        j = _significant(out, i)
        if t.kind is Kind.WORD and t.text.upper() == "IN_UNIT" and _punct(out, j, "("):
            args, close = split_args(out, j)
            if close < 0:
                raise RewriteError("unbalanced parentheses", t.start)
            args = [[x for x in a if x.kind is not Kind.SPACE] for a in args]
            if (len(args) != 2 or len(args[1]) != 1
                    or args[1][0].kind is not Kind.STRING):
                raise RewriteError("IN_UNIT takes a column and a unit string, e.g. "
                                   "IN_UNIT(em_min, 'nm')", t.start)
            col = "".join(x.text for x in args[0])
            if not re.fullmatch(r'(?:[A-Za-z_]\w*\.)?(?:[A-Za-z_]\w*|"[^"]+")', col):
                raise RewriteError("IN_UNIT converts a column: its first argument "
                                   "must name one", t.start)
            unit = literal(args[1][0].text)[1:-1].replace("''", "'")
            calls.append(UnitCall(col, unit, t.start))
            name = Token(Kind.WORD, f"zqfninunit{len(calls) - 1}", t.start)
            out[i:close + 1] = [name, Token(Kind.PUNCT, "(", t.start), *args[0],
                                Token(Kind.PUNCT, ")", t.start)]
        i += 1
    return out, calls


def unit_factor(from_unit: str | None, to_unit: str, column: str) -> float:
    """Return the factor converting values in ``from_unit`` to ``to_unit``.

    Raises
    ------
    ValueError
        If the column has no unit, a unit is not VOUnit, or they do not convert.
    """
    from astropy import units as u

    if not from_unit:
        raise ValueError(f"IN_UNIT: column {column} has no unit")
    try:
        source = u.Unit(from_unit, format="vounit")
        target = u.Unit(to_unit, format="vounit")
    except ValueError:
        raise ValueError(f"IN_UNIT: {to_unit!r} is not a VOUnit") from None
    try:
        return float(source.to(target))
    except u.UnitConversionError:
        raise ValueError(f"IN_UNIT: {column} in {from_unit} cannot be converted to "
                         f"{to_unit}") from None


# -- EXCEPT, INTERSECT ---------------------------------------------------------


def rename_set_operators(tokens: list[Token]) -> tuple[list[Token], list[str]]:
    """Write EXCEPT and INTERSECT as UNION; return every set operator in order."""
    out: list[Token] = []
    ops: list[str] = []
    for t in tokens:
        word = t.text.upper() if t.kind is Kind.WORD else ""
        if word in ("UNION", "EXCEPT", "INTERSECT"):
            ops.append(word)
            out.append(Token(Kind.WORD, "UNION", t.start))
        else:
            out.append(t)
    return out, ops


def restore_set_operators(sql: str, ops: list[str]) -> str:
    """Name back the set operators, in order (the n-th UNION is the n-th op)."""
    it = iter(ops)
    found: list[str] = []

    def put(m: re.Match[str]) -> str:
        op = next(it, "UNION")
        found.append(op)
        return op

    out = re.sub(r"\bUNION\b", put, sql)
    if found != ops:
        raise RewriteError("query cannot be translated (set operators)", 0)
    return out


# -- WITH ----------------------------------------------------------------------


def expand_common_tables(tokens: list[Token]) -> list[Token]:
    """Write ``WITH a AS (q) ... FROM a`` as ``... FROM (q) AS a``.

    Each table expression may use the ones before it. A name in a FROM clause
    (after FROM, JOIN or a comma of the FROM list) is replaced; qualified
    columns (``a.x``) keep working because the derived table is named ``a``.
    """
    first = _significant(tokens, -1)
    if _word(tokens, first) != "WITH":
        return tokens
    tables: dict[str, list[Token]] = {}
    i = _significant(tokens, first)
    while True:
        t = tokens[i] if i < len(tokens) else None
        if t is None or t.kind is not Kind.WORD:
            raise RewriteError("WITH needs 'name AS (query)'",
                               t.start if t else tokens[first].start)
        name = t.text.lower()
        a = _significant(tokens, i)
        if _punct(tokens, a, "("):
            raise RewriteError("column lists in WITH are not supported; name the "
                               "columns in the query", tokens[a].start)
        o = _significant(tokens, a)
        if _word(tokens, a) != "AS" or not _punct(tokens, o, "("):
            raise RewriteError("WITH needs 'name AS (query)'", t.start)
        close = _matching(tokens, o)
        tables[name] = _substitute(tokens[o + 1:close], tables)
        i = _significant(tokens, close)
        if _punct(tokens, i, ","):
            i = _significant(tokens, i)
            continue
        break
    return _substitute(tokens[i:], tables)


def _substitute(tokens: list[Token], tables: dict[str, list[Token]]) -> list[Token]:
    out: list[Token] = []
    in_from = [False]
    for idx, t in enumerate(tokens):
        word = t.text.upper() if t.kind is Kind.WORD else ""
        if _punct(tokens, idx, "("):
            in_from.append(False)
        elif _punct(tokens, idx, ")") and len(in_from) > 1:
            in_from.pop()
        elif word == "FROM":
            in_from[-1] = True
        elif word in _FROM_ENDS:
            in_from[-1] = False
        prev = _significant(tokens, idx, -1)
        after_table_start = (_word(tokens, prev) in ("FROM", "JOIN")
                             or (_punct(tokens, prev, ",") and in_from[-1]))
        nxt = _significant(tokens, idx)
        qualified = _punct(tokens, nxt, ".") or _punct(tokens, prev, ".")
        if (t.kind is Kind.WORD and t.text.lower() in tables and in_from[-1]
                and after_table_start and not qualified):
            body = tables[t.text.lower()]
            out += [Token(Kind.PUNCT, "(", t.start), *body,
                    Token(Kind.PUNCT, ")", t.start)]
            alias = _word(tokens, nxt)
            has_alias = alias == "AS" or (
                nxt < len(tokens) and tokens[nxt].kind in (Kind.WORD, Kind.DELIMITED)
                and alias not in _NOT_ALIAS)
            if not has_alias:
                out += [Token(Kind.SPACE, " ", t.start),
                        Token(Kind.WORD, "AS", t.start),
                        Token(Kind.SPACE, " ", t.start), t]
            continue
        out.append(t)
    return out
