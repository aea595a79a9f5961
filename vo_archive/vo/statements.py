"""Selects built once per query shape and prepared once per database connection.

A DAL request's select depends on the request in two ways: its *shape* (which
constraints are present, how many OR-ed values each has, the VERB) and the
*values* in it (a cone's centre, the HEALPix ranges, MAXREC). For a cone search
that runs in 0.1 ms, building the SQLAlchemy select costs about 1 ms and
PostgreSQL's planning of it another 0.5-1 ms. So a service describes a request
as a :class:`ShapedQuery`: a hashable key of its shape, a function building the
select of that shape with named bound parameters, and the values of those
parameters. The select is built and compiled once per key and process, and
``PREPARE``d once per database connection; each request is then one round trip
(:func:`run`): the access scope, the statement limits and ``EXECUTE`` sent as
one simple-query message, which PostgreSQL runs as one implicit transaction,
so the settings made with ``set_config(..., true)`` hold for this statement
only. A statement that starts from HEALPix ranges runs the generic plan of its
shape, made once per connection, with nested loops from the ranges
(``tests/db/test_positional.py`` checks the plan); others are planned as
PostgreSQL chooses for prepared statements.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import re
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2
from sqlalchemy import Engine, Float, String, and_, any_, bindparam, exc, or_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType

from vo_archive.vo import positional
from vo_archive.vo.dali.params import Interval

#: Longest a DAL query may run.
STATEMENT_TIMEOUT_MS = 120_000

# The settings of every prepared execution. The range join's row estimate on a
# big table passes jit_above_cost: JIT would add ~5 ms to a 0.1 ms query.
_SETTINGS = ("SELECT set_config('vo_archive.proprietary', %(_scope)s, true), "
             f"set_config('statement_timeout', '{STATEMENT_TIMEOUT_MS}', true), "
             "set_config('jit', 'off', true)")
# A generic plan cannot know that the HEALPix ranges of a region are narrow: it
# estimates a good part of the table for them and would hash-join the products
# to the candidates (a scan of every product, 40 ms instead of 0.5 ms on 20,000
# products). A statement that starts from the ranges is a chain of index
# lookups whatever the values: its plan is made with nested loops only, and is
# the generic plan from the first execution on (no planning per request).
_FROM_RANGES = (", set_config('enable_hashjoin', 'off', true), "
                "set_config('enable_mergejoin', 'off', true), "
                "set_config('plan_cache_mode', 'force_generic_plan', true)")
#: Runs a query giving one value (on the connection of the request).
Scalar = Callable[[str], Any]

_PLACEHOLDER = re.compile(r"%\(([^)]+)\)s")
_INFO_KEY = "vo_archive_prepared"


@dataclass(frozen=True, slots=True)
class ShapedQuery:
    """A request's select: its shape, how to build it, and its values.

    Parameters
    ----------
    key
        Everything that changes the statement's text (not its values); the
        first item names the service.
    build
        Builds the select of this shape with ``bindparam``s named as in
        ``values`` (called once per key and process).
    values
        The request's value of every bound parameter the select leaves open,
        or a function making them that may first ask the database (it is given
        a function running a one-value query on the request's connection).
    from_ranges
        Whether the select starts from HEALPix index ranges (a materialized
        candidates CTE): its plan is then made of nested loops only.
    """

    key: Hashable
    build: Callable[[], Select[Any]]
    values: Mapping[str, Any] | Callable[[Scalar], Mapping[str, Any]]
    from_ranges: bool = False

    def resolve(self, scalar: Scalar) -> Mapping[str, Any]:
        """Return the values of the parameters."""
        return self.values(scalar) if callable(self.values) else self.values


@dataclass(frozen=True, slots=True)
class CompiledShape:
    """A shape's select compiled to SQL, and its PREPARE and EXECUTE texts."""

    name: str
    select: Select[Any]
    #: Names of the request's values, as the build leaves them open.
    open_names: frozenset[str]
    #: Values the build fixed (literals of the select), by parameter name.
    constants: Mapping[str, Any]
    prepare_sql: str
    execute_sql: str


_shapes: dict[Hashable, CompiledShape] = {}
#: Most shapes kept compiled in a process, and most statements prepared on a
#: connection: a client can make new shapes at will (one more BAND interval,
#: one more POS region), and neither memory may grow with them. Past the
#: limit, the compiled shapes are forgotten, or the connection's statements
#: deallocated, and made again as requests need them.
MAX_SHAPES = 512
MAX_PREPARED = 64
_lock = threading.Lock()
_numbers = itertools.count(1)


#: Per interval of a parameter: whether its lower and its upper end are finite.
IntervalShape = tuple[tuple[bool, bool], ...]


def bind_intervals(name: str, intervals: Sequence[Interval]
                   ) -> tuple[IntervalShape, dict[str, float]]:
    """Return the shape of OR-ed intervals and the values of their finite ends."""
    shape = tuple((math.isfinite(iv.lo), math.isfinite(iv.hi)) for iv in intervals)
    values: dict[str, float] = {}
    for i, iv in enumerate(intervals):
        if math.isfinite(iv.lo):
            values[f"{name}_{i}_lo"] = iv.lo
        if math.isfinite(iv.hi):
            values[f"{name}_{i}_hi"] = iv.hi
    return shape, values


def overlap_test(lo_col: ColumnElement[Any], hi_col: ColumnElement[Any], name: str,
                 shape: IntervalShape) -> ColumnElement[bool]:
    """Return the test that ``[lo_col, hi_col]`` meets one of the bound intervals.

    The intervals are those of :func:`bind_intervals`; a NULL end never matches
    (SIA 2.0 §2.1).
    """
    tests = []
    for i, (has_lo, has_hi) in enumerate(shape):
        conds: list[ColumnElement[bool]] = [lo_col.isnot(None), hi_col.isnot(None)]
        if has_hi:
            conds.append(lo_col <= bindparam(f"{name}_{i}_hi", type_=Float))
        if has_lo:
            conds.append(hi_col >= bindparam(f"{name}_{i}_lo", type_=Float))
        tests.append(and_(*conds))
    return or_(*tests)


def one_of(expr: ColumnElement[Any], name: str, type_: Any = None,
           value: Sequence[Any] | None = None) -> ColumnElement[bool]:
    """Return ``expr = ANY(:name)``: one bound array, whatever its length.

    The array is a request's value, or the constant ``value``.
    """
    array = ARRAY(type_ or String)
    param = (bindparam(name, type_=array) if value is None
             else bindparam(name, list(value), type_=array))
    return expr == any_(param)


def _type_name(dialect: Dialect, type_: Any) -> str:
    if isinstance(type_, NullType):
        return "unknown"
    return str(dialect.type_compiler_instance.process(type_))


def check_values(shape: CompiledShape, values: Mapping[str, Any]) -> None:
    """Check that ``values`` are the parameters the shape leaves open.

    Raises
    ------
    ValueError
        When they are not: the shape key and the values disagree with the build.
    """
    if shape.open_names != values.keys():
        raise ValueError(f"shape {shape.name}: the select leaves open "
                         f"{sorted(shape.open_names)}, the query gives "
                         f"{sorted(values)}")


def compile_shape(query: ShapedQuery, dialect: Dialect) -> CompiledShape:
    """Return the compiled shape of ``query`` (built on the first call per key)."""
    key = (query.key, positional.cover_in_server()) if query.from_ranges else query.key
    with _lock:
        shape = _shapes.get(key)
    if shape is None:
        select = query.build()
        compiled = select.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError(f"shape {query.key!r}: an IN list varies with its values; "
                             "bind it as one array (one_of)")
        binds = compiled.binds
        defaults = compiled.construct_params(_check=False)
        # the select's own values (type names, column keys) are written into
        # the statement, so the planner sees them; the request's are parameters
        literals: dict[str, str] = {}
        order: list[str] = []
        for name in _PLACEHOLDER.findall(compiled.string):
            if name in literals or name in order:
                continue
            bind = binds[name]
            if not bind.required:
                try:
                    text = compiled.render_literal_value(defaults[name], bind.type)
                except (NotImplementedError, exc.CompileError):
                    text = None
                if text is not None:
                    literals[name] = text.replace("%", "%%")
                    continue
            order.append(name)
        numbers = {name: i + 1 for i, name in enumerate(order)}
        open_names = frozenset(n for n in order if binds[n].required)
        constants = {n: defaults[n] for n in order if n not in open_names}

        def placeholder(m: re.Match[str]) -> str:
            name = m.group(1)
            return literals[name] if name in literals else f"${numbers[name]}"

        body = _PLACEHOLDER.sub(placeholder, compiled.string)
        name = f"vo_{next(_numbers)}"
        types = ", ".join(_type_name(dialect, binds[n].type) for n in order)
        shape = CompiledShape(
            name=name, select=select, open_names=open_names, constants=constants,
            prepare_sql=f"PREPARE {name} ({types}) AS {body}" if order
            else f"PREPARE {name} AS {body}",
            execute_sql=(f"EXECUTE {name} ("
                         + ", ".join(f"%({n})s" for n in order) + ")") if order
            else f"EXECUTE {name}")
        with _lock:
            if len(_shapes) >= MAX_SHAPES:
                _shapes.clear()
            shape = _shapes.setdefault(key, shape)
    return shape


def _scalar(cur: Any, sql: str) -> Any:
    cur.execute(sql)
    row = cur.fetchone()
    return None if row is None else row[0]


def run(engine: Engine, query: ShapedQuery, proprietary: bool) -> list[tuple[Any, ...]]:
    """Run ``query`` for a caller and return its rows, in one round trip.

    A connection the server dropped (a restart, an idle timeout) is found by
    the statement itself rather than by a test query at each checkout: every
    connection the pool holds is then taken for as old as it (it is made anew
    at its next checkout, with no prepared statements), and the statement, a
    read, is sent once more on a new connection. A database that is still
    down raises again: the app answers that with a transient fault
    (:mod:`vo_archive.db.outage`).

    Parameters
    ----------
    engine
        The archive's engine (its pool lends the connection); one without
        pre-ping (:func:`vo_archive.db.engine.get_engine`) saves a round trip.
    query
        The shaped query.
    proprietary
        Whether the caller may see proprietary products (the access scope of
        :mod:`vo_archive.access`).

    Raises
    ------
    psycopg2.Error
        What the database raised (a refused connection included); the
        connection stays usable, or is discarded when the server closed it.
    """
    for attempt in (1, 2):
        fairy = engine.raw_connection()
        try:
            return _run_on(fairy, engine.dialect, query, proprietary)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
            dbapi = fairy.dbapi_connection
            if dbapi is not None and dbapi.closed == 0:
                raise
            # The server went away: the pool's other connections are from
            # before, like this one. SQLAlchemy's own statements invalidate
            # the pool this way when they meet a disconnect.
            engine.pool._invalidate(fairy, error)
            if attempt == 2:
                raise
        finally:
            fairy.close()
    raise AssertionError("unreachable")


def _run_on(fairy: Any, dialect: Dialect, query: ShapedQuery, proprietary: bool
            ) -> list[tuple[Any, ...]]:
    prepared: set[str] = fairy.info.setdefault(_INFO_KEY, set())
    dbapi = fairy.dbapi_connection
    dbapi.autocommit = True
    try:
        with dbapi.cursor() as cur:
            scalar = functools.partial(_scalar, cur)
            if query.from_ranges:
                # the statement's text depends on where its ranges are made
                positional.detect_cover(scalar)
            shape = compile_shape(query, dialect)
            values = query.resolve(scalar)
            check_values(shape, values)
            params = dict(shape.constants)
            params.update(values)
            params["_scope"] = "on" if proprietary else "off"
            parts = [_SETTINGS + _FROM_RANGES if query.from_ranges else _SETTINGS,
                     shape.execute_sql]
            if shape.name not in prepared:
                parts.insert(0, shape.prepare_sql)
                if len(prepared) >= MAX_PREPARED:
                    parts.insert(0, "DEALLOCATE ALL")
                    prepared.clear()
            try:
                cur.execute("; ".join(parts), params)
                rows: list[tuple[Any, ...]] = cur.fetchall()
            except psycopg2.Error:
                # a PREPARE is not undone by the failure that follows it:
                # start this connection's statements afresh
                prepared.clear()
                if dbapi.closed == 0:
                    with contextlib.suppress(psycopg2.Error):
                        cur.execute("DEALLOCATE ALL")
                raise
        prepared.add(shape.name)
        return rows
    finally:
        if dbapi.closed == 0:
            dbapi.autocommit = False
