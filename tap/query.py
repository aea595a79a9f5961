"""Run a checked ADQL query safely and describe its result columns.

The query runs inside :func:`vo_archive.access.caller_connection` (so the
published views show the caller what the access rule allows), in a READ ONLY
transaction, as the role :data:`READER_ROLE` that may only read the published
schemas, with ``statement_timeout`` and a search path holding only the ADQL
helper functions and pgSphere. Uploaded tables are created first, as
temporary tables of the same transaction. Rows come from a server-side cursor,
so memory does not grow with the result.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import psycopg2
import psycopg2.errors
from sqlalchemy import Connection, Engine, text

from tap.adql.translate import Translation
from tap.published import Table, unquote
from tap.uploads import UploadedTable, create_temp_table
from vo_archive.access import Caller, caller_connection
from vo_archive.db.outage import database_unavailable
from vo_archive.vo.dali.errors import TransientFault, UsageFault
from vo_archive.vo.votable import Field, spherical_pairs

log = logging.getLogger(__name__)

READER_ROLE = "pessto_tap_reader"
FETCH = 2000

#: VOTable datatype of PostgreSQL built-in types, by type OID.
_OID_TYPES: dict[int, tuple[str, str | None, str | None]] = {
    16: ("boolean", None, None), 20: ("long", None, None), 21: ("short", None, None),
    23: ("int", None, None), 700: ("float", None, None), 701: ("double", None, None),
    1700: ("double", None, None), 25: ("char", "*", None), 1043: ("char", "*", None),
    1042: ("char", "*", None), 19: ("char", "*", None), 18: ("char", "*", None),
    1082: ("char", "*", "timestamp"), 1114: ("char", "*", "timestamp"),
    1184: ("char", "*", "timestamp"), 1022: ("double", "*", None),
    1021: ("float", "*", None), 1007: ("int", "*", None), 1016: ("long", "*", None),
    1005: ("short", "*", None), 1000: ("boolean", "*", None),
}
_GEOMETRY: dict[str, tuple[str, str | None, str | None]] = {
    "spoint": ("double", "2", "point"), "scircle": ("double", "3", "circle"),
    "spoly": ("double", "*", "polygon"), "sbox": ("double", "*", "polygon")}
_CIRCLE = re.compile(r"<\s*\(([^,]+),([^)]+)\)\s*,\s*([^>]+)>")


@dataclass
class ResultColumn:
    """A result column: its FIELD and how to turn database values into output."""

    field: Field
    convert: Callable[[Any], Any] | None = None


@dataclass
class ResultSet:
    """An open query result: FIELDs and a row iterator. Close it when done."""

    columns: list[ResultColumn]
    _rows: Iterator[tuple[Any, ...]]
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def fields(self) -> list[Field]:
        """Return the result FIELDs."""
        return [c.field for c in self.columns]

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Yield output rows (converted values); closes the query at the end."""
        convs = [c.convert for c in self.columns]
        try:
            for row in self._rows:
                yield tuple(v if conv is None or v is None else conv(v)
                            for v, conv in zip(row, convs, strict=True))
        finally:
            self.close()

    def close(self) -> None:
        """End the transaction (its temporary tables go with it)."""
        self._stack.close()


def _geometry_oids(conn: Connection) -> dict[int, str]:
    rows = conn.execute(text(
        "SELECT oid, typname FROM pg_type WHERE typname IN "
        "('spoint', 'scircle', 'spoly', 'sbox')")).all()
    return {int(oid): name for oid, name in rows}


def _convert_geometry(kind: str) -> Callable[[Any], Any]:
    if kind == "scircle":
        def circle(v: Any) -> Any:
            m = _CIRCLE.search(str(v))
            if not m:
                return None
            pair = spherical_pairs(f"({m.group(1)},{m.group(2)})") or []
            import math
            return [*pair, math.degrees(float(m.group(3)))]
        return circle
    if kind == "sbox":
        def box(v: Any) -> Any:
            p = spherical_pairs(str(v)) or []
            if len(p) != 4:
                return None
            (a1, d1), (a2, d2) = (p[0], p[1]), (p[2], p[3])
            return [a1, d1, a2, d1, a2, d2, a1, d2]
        return box
    return lambda v: spherical_pairs(str(v))


def _published_column(name: str, translation: Translation,
                      uploads: dict[str, UploadedTable]) -> Field | None:
    tables: list[Table] = list(translation.tables)
    for t in tables:
        c = t.column(name)
        if c is not None:
            return c.field()
    for up in translation.uploads:
        table = uploads.get(up)
        if table is not None:
            col = table.column(name)
            if col is not None:
                return col.field
    return None


def describe(description: Any, geometry: dict[int, str], translation: Translation,
             uploads: dict[str, UploadedTable], absolute: Callable[[str], str]
             ) -> list[ResultColumn]:
    """Return the result columns of a cursor description (TAP 1.1 §3.2).

    Names are the SELECT list's; datatypes come from the database types, and
    unit, UCD, utype, xtype and description from the published column of the
    same name when its datatype agrees.
    """
    out: list[ResultColumn] = []
    seen: set[str] = set()
    for i, d in enumerate(description):
        name = d.name if d.name and d.name != "?column?" else f"col{i + 1}"
        base = name
        n = 1
        while name.lower() in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name.lower())
        conv: Callable[[Any], Any] | None = None
        if d.type_code in geometry:
            kind = geometry[d.type_code]
            datatype, size, xtype = _GEOMETRY[kind]
            conv = _convert_geometry(kind)
        else:
            datatype, size, xtype = _OID_TYPES.get(d.type_code, ("char", "*", None))
            if d.type_code == 1700:
                conv = float
            elif datatype == "char" and d.type_code not in _OID_TYPES:
                conv = str
        meta = _published_column(base, translation, uploads)
        f = Field(name, datatype, size, xtype=xtype)
        if (meta is not None and meta.xtype == "adql:REGION"
                and d.type_code in geometry):
            f = Field(name, "char", "*", None, meta.ucd, meta.utype, meta.xtype,
                      meta.description)
            conv = _stcs(geometry[d.type_code])
        elif meta is not None and meta.datatype == datatype:
            f = Field(name, datatype, meta.arraysize if size else None, meta.unit,
                      meta.ucd, meta.utype, meta.xtype or xtype, meta.description)
            if unquote(meta.name).lower() == "access_url":
                conv = _absolute_url(absolute)
        out.append(ResultColumn(f, conv))
    return out


def _stcs(kind: str) -> Callable[[Any], Any]:
    """Return a converter of pgSphere values to STC-S text (ADQL REGION)."""
    to_array = _convert_geometry(kind)
    shape = {"spoint": "Position", "scircle": "Circle"}.get(kind, "Polygon")

    def convert(v: Any) -> Any:
        values = to_array(v)
        if not values:
            return None
        return f"{shape} ICRS " + " ".join(repr(float(x)) for x in values)
    return convert


def _absolute_url(absolute: Callable[[str], str]) -> Callable[[Any], Any]:
    return lambda v: absolute(v) if isinstance(v, str) and v.startswith("/") else v


@dataclass(frozen=True, slots=True)
class Limits:
    """How long a query may run, and how many rows are read at most."""

    timeout_s: float
    maxrec: int


def _pg_message(exc: psycopg2.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    text_ = primary or str(exc).strip().splitlines()[0]
    return text_


def execute(engine: Engine, caller: Caller, translation: Translation,
            uploads: list[UploadedTable], limits: Limits,
            absolute: Callable[[str], str],
            on_backend: Callable[[int], None] | None = None) -> ResultSet:
    """Run a translated query; return its open result.

    Parameters
    ----------
    engine
        The archive's engine.
    caller
        Whose access scope applies.
    translation
        The checked query.
    uploads
        Uploaded tables named in the query.
    limits
        Statement timeout and MAXREC (``maxrec + 1`` rows at most are read).
    absolute
        Turns an archive path into an absolute URL (``access_url``).
    on_backend
        Called with the PostgreSQL backend pid before the query starts (async
        jobs record it so ABORT can cancel the query).

    Raises
    ------
    UsageFault
        When the database rejects the query (unknown column, type mismatch...).
    TransientFault
        When the query ran past its time limit.
    """
    stack = contextlib.ExitStack()
    try:
        conn = stack.enter_context(caller_connection(engine, caller))
        stack.callback(_reset_session_scope, conn)
        geometry = _geometry_oids(conn)
        by_name = {u.name: u for u in uploads}
        for name in translation.uploads:
            create_temp_table(conn, by_name[name], READER_ROLE)
        if on_backend is not None:
            on_backend(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        timeout_ms = max(1, int(limits.timeout_s * 1000)) if limits.timeout_s else 0
        conn.execute(text(
            "SELECT set_config('search_path', 'tap_adql, public', true), "
            "set_config('statement_timeout', :t, true), "
            "set_config('transaction_read_only', 'on', true)"),
            {"t": str(timeout_ms)})
        conn.execute(text(f"SET LOCAL ROLE {READER_ROLE}"))
        dbapi = conn.connection.dbapi_connection
        if dbapi is None:
            raise AssertionError("the query's connection has no DBAPI connection")
        # SQLAlchemy types it as any DBAPI connection: here it is psycopg2's, whose
        # named (server-side) cursors have an itersize
        cur = cast("psycopg2.extensions.connection", dbapi).cursor(name="tap_query")
        stack.callback(_close_quietly, cur)
        cur.itersize = FETCH
        try:
            cur.execute(translation.sql)
            first = cur.fetchmany(min(FETCH, limits.maxrec + 1))
        except psycopg2.errors.QueryCanceled as exc:
            raise TransientFault(
                f"query cancelled: it ran longer than {limits.timeout_s:g} s or was "
                f"aborted ({_pg_message(exc)})") from None
        except psycopg2.Error as exc:
            if database_unavailable(exc):
                raise  # the server went away: not the query's fault
            raise UsageFault(f"query failed: {_pg_message(exc)}") from None
        columns = describe(cur.description, geometry, translation, by_name, absolute)

        def rows() -> Iterator[tuple[Any, ...]]:
            n = 0
            for row in first:
                yield row
                n += 1
            if n < min(FETCH, limits.maxrec + 1):
                return
            while n <= limits.maxrec:
                batch = cur.fetchmany(min(FETCH, limits.maxrec + 1 - n))
                if not batch:
                    return
                for row in batch:
                    yield row
                    n += 1
        return ResultSet(columns, rows(), stack)
    except BaseException as exc:
        # the transaction is rolled back, not committed: after a lost
        # connection a commit would raise an error of its own in its place
        stack.__exit__(type(exc), exc, exc.__traceback__)
        raise


def _reset_session_scope(conn: Connection) -> None:
    """Clear any session-level access setting before the connection is reused.

    ADQL cannot call set_config, but if a query ever did, a session-level
    ``vo_archive.proprietary`` would outlive it on the pooled connection; this
    runs inside the query's transaction, just before it commits.
    """
    with contextlib.suppress(Exception):
        conn.exec_driver_sql(
            "SELECT set_config('vo_archive.proprietary', '', false)")


def _close_quietly(cur: Any) -> None:
    with contextlib.suppress(psycopg2.Error):
        cur.close()


def decimal_to_float(v: Any) -> Any:
    """Return floats for numeric values."""
    return float(v) if isinstance(v, Decimal) else v
