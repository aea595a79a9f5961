"""TAP_UPLOAD: VOTables sent with a query, loaded into temporary tables.

DALI 1.1 §3.4.5 and TAP 1.1 §2.7.6: ``UPLOAD=name,URI`` where URI is
``param:<part>`` (a multipart part of the same POST) or an http(s) URL (fetched
by :mod:`vo_archive.web.fetch`, which refuses the archive's own networks); one
UPLOAD value may list several tables separated by ``;`` (pyvo), and UPLOAD
may be repeated. Each table becomes ``TAP_UPLOAD.<name>``: a temporary table
of the query's transaction (dropped at its end), readable by the TAP reader
role. Column names, datatypes, arraysizes, xtypes, units and UCDs are kept so
that ``SELECT * FROM TAP_UPLOAD.t`` returns what was sent.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg2.extras import execute_values
from sqlalchemy import Connection

from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.votable import Field
from vo_archive.web.fetch import FetchError, FetchPolicy, fetch

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
#: Largest upload accepted, in bytes (TAPRegExt uploadLimit).
MAX_UPLOAD_BYTES = 16 << 20
MAX_UPLOAD_ROWS = 200_000
_IDENT = re.compile(r"[a-z][a-z0-9_]*\Z")

_SQL_TYPES = {"boolean": "boolean", "bit": "boolean", "unsignedByte": "smallint",
              "short": "smallint", "int": "integer", "long": "bigint",
              "float": "real", "double": "double precision",
              "floatComplex": "text", "doubleComplex": "text"}


@dataclass(frozen=True, slots=True)
class UploadSpec:
    """One UPLOAD: a table name and where its VOTable is."""

    name: str
    uri: str


@dataclass(frozen=True, slots=True)
class UploadColumn:
    """A column of an uploaded table: its SQL name and type, and its FIELD."""

    sql_name: str
    sql_type: str
    field: Field


@dataclass
class UploadedTable:
    """An uploaded table, parsed."""

    name: str
    columns: list[UploadColumn]
    rows: list[tuple[Any, ...]]

    def column(self, sql_name: str) -> UploadColumn | None:
        """Return the column whose SQL name is ``sql_name``."""
        for c in self.columns:
            if c.sql_name == sql_name:
                return c
        return None


def parse_upload(value: str) -> list[UploadSpec]:
    """Parse an UPLOAD value: ``name,URI`` pairs separated by ``;``.

    Raises
    ------
    UsageFault
        If a name is not an ADQL identifier or a URI is neither ``param:`` nor
        http(s).
    """
    specs = []
    for part in value.split(";"):
        if not part.strip():
            continue
        name, sep, uri = part.partition(",")
        name, uri = name.strip(), uri.strip()
        if not sep or not uri:
            raise UsageFault(f"UPLOAD {part!r} is not 'name,URI'", "UPLOAD")
        if not NAME.match(name):
            raise UsageFault(f"UPLOAD table name {name!r} is not an ADQL identifier",
                             "UPLOAD")
        if not (uri.startswith("param:") or re.match(r"https?://", uri)):
            raise UsageFault(f"UPLOAD URI {uri!r} must be param:<part> or http(s)",
                             "UPLOAD")
        specs.append(UploadSpec(name, uri))
    return specs


def fetch_http(name: str, url: str, rule: FetchPolicy,
               limit: int = MAX_UPLOAD_BYTES) -> bytes:
    """Download the upload ``name`` by URL (see :mod:`vo_archive.web.fetch`).

    Raises
    ------
    UsageFault
        "address not allowed" for an address the policy refuses, "could not
        fetch" for any other failure (the same whatever the port's state), or
        when the answer is larger than ``limit``.
    """
    try:
        return fetch(url, rule, limit)
    except FetchError as exc:
        raise UsageFault(f"UPLOAD {name}: {exc}", "UPLOAD") from None


def resolve(specs: Sequence[UploadSpec], inline: Callable[[str], bytes | None],
            rule: FetchPolicy) -> list[tuple[str, bytes]]:
    """Fetch every upload's bytes; ``inline(part)`` returns a multipart part.

    ``rule`` says which non-global addresses an upload by URL may come from.
    """
    out = []
    for spec in specs:
        if spec.uri.startswith("param:"):
            part = spec.uri[len("param:"):]
            content = inline(part)
            if content is None:
                raise UsageFault(f"UPLOAD {spec.name}: no part {part!r} was sent with "
                                 "the request", "UPLOAD")
            if len(content) > MAX_UPLOAD_BYTES:
                raise UsageFault(f"UPLOAD {spec.name} is larger than "
                                 f"{MAX_UPLOAD_BYTES} bytes", "UPLOAD")
        else:
            content = fetch_http(spec.name, spec.uri, rule)
        out.append((spec.name, content))
    return out


def _sql_name(name: str, taken: set[str]) -> str:
    base = name.lower() if _IDENT.match(name.lower()) else (
        re.sub(r"[^a-z0-9_]", "_", name.lower()) or "col")
    if not base[0].isalpha():
        base = "c_" + base
    out, n = base, 1
    while out in taken:
        n += 1
        out = f"{base}_{n}"
    taken.add(out)
    return out


def _python(value: Any, field: Any) -> Any:
    if value is np.ma.masked or value is None:
        return None
    if isinstance(value, np.ma.MaskedArray):
        value = value.filled(np.nan) if value.dtype.kind == "f" else value.data
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SU":
            return "".join(str(x) for x in value.tolist())
        return [None if isinstance(x, float) and math.isnan(x) else x
                for x in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        return value
    return value


def load_votable(name: str, content: bytes) -> UploadedTable:
    """Parse an uploaded VOTable (TABLEDATA, BINARY, BINARY2; first table).

    Raises
    ------
    UsageFault
        If the content is not a VOTable with a table.
    """
    from astropy.io.votable import parse

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vot = parse(io.BytesIO(content), verify="ignore")
            table = vot.get_first_table()
            array = table.array
    except Exception as exc:  # any parse failure is the caller's
        raise UsageFault(f"UPLOAD {name} is not a readable VOTable: {exc}",
                         "UPLOAD") from None
    if len(array) > MAX_UPLOAD_ROWS:
        raise UsageFault(f"UPLOAD {name} has more than {MAX_UPLOAD_ROWS} rows",
                         "UPLOAD")
    taken: set[str] = set()
    columns = []
    for f in table.fields:
        dt = f.datatype
        size = f.arraysize
        if dt in ("char", "unicodeChar"):
            sql_type = "text"
            out_dt, out_size = "char" if dt == "char" else "unicodeChar", "*"
        elif size and size != "1":
            base = _SQL_TYPES.get(dt, "double precision")
            sql_type = base + "[]"
            out_dt, out_size = dt, size
        else:
            sql_type = _SQL_TYPES.get(dt, "text")
            out_dt, out_size = dt, None
            if dt == "bit":
                out_dt = "boolean"
        field = Field(f.name, out_dt, out_size, f.unit and str(f.unit), f.ucd,
                      f.utype, f.xtype, None)
        columns.append(UploadColumn(_sql_name(f.name, taken), sql_type, field))
    rows = []
    for rec in array:
        rows.append(tuple(_python(rec[i], table.fields[i])
                          for i in range(len(columns))))
    return UploadedTable(name.lower(), columns, rows)


def create_temp_table(conn: Connection, table: UploadedTable, reader: str) -> None:
    """Create ``pg_temp.<name>`` for the transaction and fill it."""
    cols = ", ".join(f'"{c.sql_name}" {c.sql_type}' for c in table.columns)
    cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(f'CREATE TEMP TABLE "{table.name}" ({cols}) ON COMMIT DROP')
        if table.rows:
            # table.name passed the NAME pattern in load_votable (letters, digits, _)
            execute_values(cur, f'INSERT INTO pg_temp."{table.name}" VALUES %s',  # noqa: S608
                           table.rows, page_size=1000)
        cur.execute(f'ANALYZE pg_temp."{table.name}"')
        cur.execute(f'GRANT SELECT ON pg_temp."{table.name}" TO "{reader}"')
    finally:
        cur.close()


def iter_specs(values: Sequence[str]) -> Iterator[UploadSpec]:
    """Yield the specs of several UPLOAD values."""
    for v in values:
        yield from parse_upload(v)
