"""ADQL 2.1 → PostgreSQL/pgSphere, with the checks that make it safe to run.

Parsing and translation are queryparser-python3's (ADQL grammar, pgSphere
geometry). Around it this module:

- rejects what must never reach the database: more than one statement, any
  table outside the published schema (``pg_catalog``, ``archive``, ...), any
  function that is not ADQL (``pg_sleep``, ``pg_read_file``, ``set_config``);
- supplies what queryparser lacks: ``COORD1``/``COORD2`` on points, the
  ``DISTANCE(...) < r`` index search and square-degree areas come from the
  ``tap_adql`` schema (schema/versions/0002_tap.py); ``CIRCLE(ra, dec, r)``
  with column arguments; integer-mantissa exponents; string literals kept
  verbatim;
- maps ``TAP_UPLOAD.<name>`` to the request's temporary tables.

ADQL 2.1 constructs its grammar lacks are written around it: ``LOWER``,
``UPPER``, ``COALESCE``, ``CAST`` and ``IN_UNIT`` are renamed to placeholder
functions and written back in the SQL (``IN_UNIT`` as a factor computed from
the column's unit with astropy), ``EXCEPT`` and ``INTERSECT`` pass as
``UNION`` and are named back in order, and ``WITH`` common table expressions
become derived tables. ``REGION``, ``COORDSYS`` and recursive ``WITH`` are
refused with a message naming them; the capabilities declare only what works
(:mod:`tap.capability`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NoReturn

import antlr4
from antlr4.atn.PredictionMode import PredictionMode
from antlr4.error.Errors import ParseCancellationException, RecognitionException
from antlr4.error.ErrorStrategy import BailErrorStrategy
from antlr4.tree.Tree import ParseTree, TerminalNodeImpl
from queryparser.adql import ADQLQueryTranslator
from queryparser.adql.ADQLLexer import ADQLLexer
from queryparser.adql.ADQLParser import ADQLParser
from queryparser.adql.adqltranslator import SyntaxErrorListener
from queryparser.exceptions import QueryError, QuerySyntaxError

from tap.adql import rewrite
from tap.adql.tokens import (
    Kind,
    Token,
    TokenError,
    check_size,
    split_args,
    tokenize,
)
from tap.published import Table, find_table, unquote

#: Longest ADQL text accepted (characters).
MAX_QUERY_LENGTH = 20_000
UPLOAD_SCHEMA = "tap_upload"
#: Where uploaded tables live for the duration of a query.
UPLOAD_SQL_SCHEMA = "pg_temp"
_LITERAL = "zqlit{}z"
_RESERVED_TEXT = ("zqlit", "zqfn")
_UNSUPPORTED_WORDS = {"REGION", "COORDSYS"}
_UNSUPPORTED_KEYWORDS: set[str] = {"RECURSIVE"}
#: User-defined functions callable from ADQL (TAPRegExt features-udf): ADQL
#: name -> the SQL name they are written as (functions of the ``tap_adql``
#: schema, or PostgreSQL's own).
UDFS: dict[str, str] = {"ivo_hasword": "ivo_hasword",
                        "ivo_healpix_index": "ivo_healpix_index",
                        "ivo_string_agg": "string_agg"}
#: ADQL functions queryparser's grammar parses as user-defined; the
#: ``tap_adql`` schema supplies them (schema/versions/0002_tap.py,
#: 0012_adql.py).
SUPPLIED = frozenset({"coord1", "coord2", "centroid"})
#: ADQL 2.1 §4.9 CAST target types -> PostgreSQL's.
CAST_TYPES = {"SMALLINT": "SMALLINT", "INTEGER": "INTEGER", "BIGINT": "BIGINT",
              "REAL": "REAL", "DOUBLE PRECISION": "DOUBLE PRECISION",
              "TIMESTAMP": "TIMESTAMP", "CHAR": "CHAR", "VARCHAR": "VARCHAR"}
#: Set operators other than UNION (ADQL 2.1 §4.11), written as UNION for the
#: parser and named back in the SQL.
SET_OPERATORS = ("UNION", "EXCEPT", "INTERSECT")
#: Longest query once common table expressions are written out.
MAX_EXPANDED_LENGTH = 200_000
#: ADQL 2.1 functions queryparser's grammar rejects (ADQL §4.5, §4.8): they are
#: renamed to placeholders that parse as function calls, then named back.
RENAMED = {"LOWER": "zqfnlower", "UPPER": "zqfnupper", "COALESCE": "zqfncoalesce"}
_RENAMED_BACK = {v: k for k, v in RENAMED.items()}
_COLUMN = r'((?:[A-Za-z_]\w*\.)?(?:[A-Za-z_]\w*|"(?:[^"]|"")+"))'
#: POINT(ra, dec) of two columns, as queryparser writes it. It becomes
#: ``tap_adql.sky_point(ra, dec)``, which the GiST indexes on positions are
#: built on and which is LEAKPROOF (schema/versions/0009_row_security.py): a
#: cone search can then use the index under the row-level policies.
_COLUMN_POINT = re.compile(rf"\bspoint\(RADIANS\({_COLUMN}\), RADIANS\({_COLUMN}\)\)")


def _second_argument(sql: str, open_paren: int) -> str:
    """Return the second argument of the call whose ``(`` is at ``open_paren``."""
    depth, start = 0, None
    for i in range(open_paren, len(sql)):
        ch = sql[i]
        if ch in "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return sql[start:i].strip() if start is not None else ""
        elif ch == "," and depth == 1:
            if start is not None:
                return sql[start:i].strip()
            start = i + 1
    return ""


def _column_geometry(sql: str) -> str:
    """Write POINTs and circles around them on columns with the LEAKPROOF helpers.

    ``POINT(ra, dec)`` of two columns becomes ``sky_point``, a circle around
    such a point ``sky_circle`` and ``DISTANCE(...) < r`` to such a point
    ``sky_dwithin`` (schema/versions/0009_row_security.py): every function on
    a column is then LEAKPROOF, and a cone or a TAP_UPLOAD crossmatch can use
    the positions' GiST index under the row-level policies. A circle whose
    radius is outside [0, 90°] matches nothing there instead of failing.
    """
    sql = _COLUMN_POINT.sub(r"sky_point(\1, \2)", sql)
    sql = sql.replace("scircle(sky_point(", "sky_circle(sky_point(")
    out, pos = [], 0
    for m in re.finditer(r"\bspoint_dwithin\(", sql):
        if _second_argument(sql, m.end() - 1).startswith("sky_point("):
            out.append(sql[pos:m.start()] + "sky_dwithin(")
            pos = m.end()
    return "".join(out) + sql[pos:]


class ADQLError(Exception):
    """A query that is not acceptable ADQL here; ``line``/``column`` are 1-based."""

    def __init__(self, message: str, line: int | None = None,
                 column: int | None = None) -> None:
        where = f" (line {line}, column {column})" if line else ""
        super().__init__(message + where)
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class Translation:
    """A checked query ready to run."""

    sql: str
    tables: tuple[Table, ...]
    uploads: tuple[str, ...] = field(default_factory=tuple)


class _Translator(ADQLQueryTranslator):  # type: ignore[misc]
    """queryparser's translator, parsing in ANTLR's fast SLL mode first.

    ANTLR's full LL prediction takes ~100 ms per query in the Python runtime;
    SLL takes ~2 ms and is exact whenever it succeeds. On an SLL failure the
    query is parsed again in LL mode, which gives the error and its position
    (the standard two-stage ANTLR strategy). The tree parsed for the checks is
    reused by the translation instead of being parsed a second time.
    """

    _fresh = False

    def parse(self) -> None:
        if self._fresh:
            self._fresh = False  # to_postgresql() re-parses: reuse our tree
            return
        stream = antlr4.CommonTokenStream(ADQLLexer(antlr4.InputStream(self.query)))
        parser = ADQLParser(stream)
        parser._interp.predictionMode = PredictionMode.SLL
        parser._errHandler = BailErrorStrategy()
        parser.removeErrorListeners()
        try:
            tree = parser.query()
        except (ParseCancellationException, RecognitionException):
            super().parse()
        else:
            self.stream, self.parser, self.tree = stream, parser, tree
            self.syntax_error_listener = SyntaxErrorListener()
            self.walker = antlr4.ParseTreeWalker()
        self._fresh = True


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _normalise(tokens: list[Token]) -> tuple[list[Token], list[str]]:
    """Replace literals by placeholders, fix numbers, expand CIRCLE(a, b, r)."""
    literals: list[str] = []
    out: list[Token] = []
    for t in tokens:
        if t.kind is Kind.STRING:
            out.append(Token(t.kind, f"'{_LITERAL.format(len(literals))}'", t.start))
            literals.append(t.text)
        elif t.kind is Kind.NUMBER and re.fullmatch(r"\d+[eE][+-]?\d+", t.text):
            mant, exp = re.split(r"(?=[eE])", t.text, maxsplit=1)
            out.append(Token(t.kind, f"{mant}.0{exp}", t.start))
        elif t.kind is Kind.WORD and t.text.upper() == UPLOAD_SCHEMA.upper():
            out.append(Token(t.kind, UPLOAD_SQL_SCHEMA, t.start))
        elif t.kind is Kind.WORD and t.text.upper() in RENAMED:
            out.append(Token(t.kind, RENAMED[t.text.upper()], t.start))
        else:
            out.append(t)
    return _expand_circles(out), literals


def _expand_circles(tokens: list[Token]) -> list[Token]:
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.kind is Kind.WORD and t.text.upper() == "CIRCLE":
            j = i + 1
            while j < len(tokens) and tokens[j].kind is Kind.SPACE:
                j += 1
            if j < len(tokens) and tokens[j].text == "(":
                args, close = split_args(tokens, j)
                args = [[x for x in a if x.kind is not Kind.SPACE] for a in args]
                if args and args[0] and args[0][0].kind is Kind.STRING:
                    args = args[1:]  # deprecated coordinate system argument
                if close > 0 and len(args) == 3 and all(args):
                    new = [Token(Kind.PUNCT, "(", t.start),
                           Token(Kind.WORD, "POINT", t.start),
                           Token(Kind.PUNCT, "(", t.start), *args[0],
                           Token(Kind.PUNCT, ",", t.start), *args[1],
                           Token(Kind.PUNCT, ")", t.start),
                           Token(Kind.PUNCT, ",", t.start), *args[2],
                           Token(Kind.PUNCT, ")", t.start)]
                    tokens = tokens[:j] + new + tokens[close + 1:]
        i += 1
    return tokens


def _join(tokens: list[Token]) -> str:
    out: list[str] = []
    for t in tokens:
        if out and t.kind is not Kind.SPACE and out[-1] != " ":
            out.append(" ")  # tokens rebuilt by _expand_circles lost their spaces
        out.append(t.text)
    return "".join(out)


def _name(ctx: antlr4.ParserRuleContext) -> str:
    return str(ctx.getText())


class _Checker:
    """Walks the parse tree: tables must be published, functions must be ADQL."""

    def __init__(self, uploads: set[str]) -> None:
        self.uploads = uploads
        self.tables: list[Table] = []
        self.used_uploads: list[str] = []

    def visit(self, ctx: ParseTree) -> None:
        # the runtime's terminal nodes are all TerminalNodeImpl, its other
        # nodes ParserRuleContext
        if isinstance(ctx, TerminalNodeImpl):
            word = ctx.getText().upper()
            if word in _UNSUPPORTED_WORDS and not isinstance(
                    ctx.parentCtx, ADQLParser.Regular_identifierContext):
                self._fail(f"{word} is not supported by this service", ctx.symbol)
            return
        if isinstance(ctx, ADQLParser.Table_nameContext):
            self._table(ctx)
        elif isinstance(ctx, ADQLParser.User_defined_functionContext):
            name = _name(ctx.getChild(0))
            if (name.lower() not in UDFS and name.lower() not in SUPPLIED
                    and name.lower() not in _RENAMED_BACK
                    and not re.fullmatch(r"zqfn(cast|inunit)\d+", name.lower())):
                self._fail(f"unknown function {name}: only ADQL functions may be "
                           "used", ctx.start)
        if isinstance(ctx, antlr4.ParserRuleContext):
            for child in ctx.getChildren():
                self.visit(child)

    def _table(self, ctx: ADQLParser.Table_nameContext) -> None:
        parts = [c for c in ctx.getChildren() if not isinstance(c, antlr4.TerminalNode)]
        names = []
        for p in parts:
            names += [x for x in re.split(r"\.(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)",
                                           p.getText()) if x]
        if len(names) != 2:
            shown = ".".join(names)
            self._fail(f"table {shown} must be given with its schema, e.g. "
                       "ivoa.ObsCore (see TAP_SCHEMA.tables)", ctx.start)
        schema, table = names
        if unquote(schema).lower() == UPLOAD_SQL_SCHEMA:
            if unquote(table).lower() not in self.uploads:
                self._fail(f"TAP_UPLOAD.{table} was not uploaded with this query",
                           ctx.start)
            self.used_uploads.append(unquote(table).lower())
            return
        found = find_table(schema, table)
        if found is None:
            self._fail(f"table {schema}.{table} is not published here (see "
                       "TAP_SCHEMA.tables)", ctx.start)
        self.tables.append(found)

    @staticmethod
    def _fail(message: str, token: antlr4.Token | None) -> NoReturn:
        raise _TreeError(message, token.start if token else 0)


class _TreeError(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def translate(adql: str, uploads: set[str] | frozenset[str] = frozenset()
              ) -> Translation:
    """Check ``adql`` and translate it to PostgreSQL.

    Parameters
    ----------
    adql
        The QUERY text.
    uploads
        Lower-case names of the tables uploaded with the query (TAP_UPLOAD).

    Raises
    ------
    ADQLError
        With the ADQL problem and its position when known.
    """
    if len(adql) > MAX_QUERY_LENGTH:
        raise ADQLError(f"query is longer than {MAX_QUERY_LENGTH} characters")
    for reserved in _RESERVED_TEXT:
        if reserved in adql.lower():
            raise ADQLError(f"query contains the reserved text {reserved!r}")
    try:
        tokens = tokenize(adql)
    except TokenError as exc:
        raise ADQLError(str(exc), *_position(adql, exc.offset)) from None
    significant = [t for t in tokens if t.kind is not Kind.SPACE]
    while significant and significant[-1].text == ";":
        significant.pop()
    if not significant:
        raise ADQLError("the query is empty")
    try:
        check_size(significant)
    except TokenError as exc:
        raise ADQLError(str(exc), *_position(adql, exc.offset)) from None
    for t in significant:
        if t.text == ";":
            raise ADQLError(
                "only one statement may be given", *_position(adql, t.start)
            )
    for t in significant:
        if t.kind is Kind.WORD and t.text.upper() in _UNSUPPORTED_KEYWORDS:
            raise ADQLError(f"{t.text.upper()} is not supported by this service",
                            *_position(adql, t.start))
    _check_top_after_union(significant, adql)
    end = significant[-1]
    tokens = [t for t in tokens if t.start <= end.start]
    try:
        tokens = rewrite.expand_common_tables(tokens)
        if sum(len(t.text) for t in tokens) > MAX_EXPANDED_LENGTH:
            raise rewrite.RewriteError(
                f"the query is longer than {MAX_EXPANDED_LENGTH} characters once "
                "its WITH tables are written out", 0)
        # the written-out WITH tables nest deeper: the bounds again
        check_size([t for t in tokens if t.kind is not Kind.SPACE])
        tokens, cast_types = rewrite.rename_casts(tokens, CAST_TYPES)
        tokens, set_ops = rewrite.rename_set_operators(tokens)
        norm, literals = _normalise(tokens)
        norm, unit_calls = rewrite.rename_in_units(
            norm, lambda ph: literals[int(ph.strip("'")[5:-1])])
    except (rewrite.RewriteError, TokenError) as exc:
        raise ADQLError(str(exc), *_position(adql, min(exc.offset, len(adql)))
                        ) from None
    text = _join(norm)
    starts = _offset_map(norm)

    def at(offset: int) -> tuple[int, int]:
        return _position(adql, _original(starts, offset))

    try:
        translator = _Translator(text)
    except RecursionError:
        # check_size keeps real queries far from this; a safety net only
        raise ADQLError("the query is nested too deeply") from None
    except QuerySyntaxError as exc:
        line, col, near = exc.syntax_errors[0]
        offset = _line_col_offset(text, line, col)
        shown = near if near not in (None, "<EOF>", ";") else "end of query"
        raise ADQLError(f"syntax error near {_restore(shown, literals)!r}",
                        *at(offset)) from None
    except QueryError as exc:
        raise ADQLError(str(exc)) from None
    checker = _Checker(set(uploads))
    try:
        checker.visit(translator.tree)
    except _TreeError as exc:
        raise ADQLError(str(exc), *at(exc.offset)) from None
    except RecursionError:
        raise ADQLError("the query is nested too deeply") from None
    try:
        sql = translator.to_postgresql()
    except QueryError as exc:
        raise ADQLError(str(exc)) from None
    except Exception as exc:  # translator bugs must not become 500s
        raise ADQLError(f"query cannot be translated: {type(exc).__name__}: {exc}"
                        ) from None
    sql = _fix_top_before_union(sql.rstrip().rstrip(";"))
    sql = re.sub(r"\bzqfn(lower|upper|coalesce)\b", lambda m: m.group(1).upper(), sql)
    try:
        sql = rewrite.restore_set_operators(sql, set_ops)
        sql = rewrite.restore_calls(sql, "zqfncast",
                                    lambda n, arg: f"CAST({arg} AS {cast_types[n]})")
        # 15 significant digits: m -> nm is 1e9, not 999999999.9999999
        factors = [float(f"{_unit_factor(call, checker.tables):.15g}")
                   for call in unit_calls]
        sql = rewrite.restore_calls(sql, "zqfninunit",
                                    lambda n, arg: f"(({arg}) * {factors[n]!r})")
    except rewrite.RewriteError as exc:
        raise ADQLError(str(exc)) from None
    sql = re.sub(r"\b(ivo_\w+)\s*\(", lambda m: UDFS.get(m.group(1).lower(),
                                                         m.group(1)) + "(", sql)
    sql = _column_geometry(sql)
    sql = _restore(sql, literals)
    return Translation(sql, tuple(dict.fromkeys(checker.tables)),
                       tuple(dict.fromkeys(checker.used_uploads)))


def _unit_factor(call: rewrite.UnitCall, tables: list[Table]) -> float:
    """Return the IN_UNIT factor of a column of the query's published tables."""
    name = call.column.rsplit(".", 1)[-1]
    units = {c.field().unit for t in tables
             if (c := t.column(unquote(name))) is not None}
    if not units:
        raise ADQLError(f"IN_UNIT: {call.column} is not a column of a published "
                        "table of this query")
    if len(units) > 1:
        raise ADQLError(f"IN_UNIT: {call.column} has different units in the "
                        "query's tables; qualify it in a subquery")
    try:
        return rewrite.unit_factor(units.pop(), call.unit, call.column)
    except ValueError as exc:
        raise ADQLError(str(exc)) from None


def _check_top_after_union(tokens: list[Token], adql: str) -> None:
    """Refuse TOP in a later part of a top-level UNION.

    queryparser writes that TOP as a LIMIT on the whole union, which would
    change the result silently.
    """
    depth = 0
    union = False
    for t in tokens:
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        elif depth == 0 and t.kind is Kind.WORD:
            word = t.text.upper()
            if word in SET_OPERATORS:
                union = True
            elif word == "TOP" and union:
                raise ADQLError("TOP in a later part of a UNION is not supported; "
                                "use a subquery or MAXREC", *_position(adql, t.start))


def _fix_top_before_union(sql: str) -> str:
    """Bracket ``SELECT ... LIMIT n`` before UNION (queryparser writes it bare).

    ADQL's TOP belongs to its own query specification; PostgreSQL only accepts
    a LIMIT there inside parentheses.
    """
    m = re.match(r"(?s)(SELECT\b.*?\bLIMIT \d+) (UNION(?: ALL)?\b.*)$", sql)
    if m and m.group(1).count("(") == m.group(1).count(")"):
        return f"({m.group(1)}) {m.group(2)}"
    return sql


def _restore(sql: str, literals: list[str]) -> str:
    def put(m: re.Match[str]) -> str:
        return literals[int(m.group(1))]

    return re.sub(r"'zqlit(\d+)z'", put, sql)


def _offset_map(tokens: list[Token]) -> list[tuple[int, int]]:
    """Map offsets in the joined text to offsets in the original query."""
    out: list[tuple[int, int]] = []
    pos = 0
    prev_space = True
    for t in tokens:
        if t.kind is not Kind.SPACE and not prev_space:
            pos += 1
        out.append((pos, t.start))
        pos += len(t.text)
        prev_space = t.kind is Kind.SPACE
    return out


def _original(starts: list[tuple[int, int]], offset: int) -> int:
    best = 0
    for joined, orig in starts:
        if joined > offset:
            break
        best = orig
    return best


def _line_col_offset(text: str, line: int, col: int) -> int:
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[: line - 1]) + col
