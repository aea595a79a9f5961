"""TAP_SCHEMA and VOSI tables, generated from :mod:`tap.published`.

:func:`sync_tap_schema` rewrites the five TAP_SCHEMA tables (TAP 1.1 §4) and
the comments on the published views from the one description in
:mod:`tap.published`; the migration calls it, and so does ``vo-archive tap
sync-schema`` after an upgrade of the description. :func:`tableset_document`
and :func:`table_document` write VOSI 1.1 §3.3 from the same description, so
``/tables`` and TAP_SCHEMA cannot disagree.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

from sqlalchemy import Connection, Engine, text

from tap.published import KEYS, SCHEMAS, Table, unquote
from vo_archive.vo.obscore import Column

VOSI_TABLES_NS = "http://www.ivoa.net/xml/VOSITables/v1.0"
VS_NS = "http://www.ivoa.net/xml/VODataService/v1.1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"


def column_size(col: Column) -> int | None:
    """Return TAP_SCHEMA ``"size"``: the integer part of a fixed arraysize."""
    if not col.arraysize:
        return None
    digits = col.arraysize.rstrip("*")
    return int(digits) if digits.isdigit() else None


def _sql_ident(name: str) -> str:
    """Return a column or table name quoted for PostgreSQL."""
    return '"' + unquote(name).lower().replace('"', '""') + '"'


DIGEST_SETTING = "tap_schema_digest"
_checked = threading.Event()
_check_lock = threading.Lock()


def description_digest() -> str:
    """Return a digest of the published description (changes when it does)."""
    return hashlib.sha256(repr((SCHEMAS, KEYS)).encode()).hexdigest()


def ensure_tap_schema(engine: Engine) -> None:
    """Resynchronise TAP_SCHEMA once per process if the description changed.

    The migration fills TAP_SCHEMA; a later release that edits
    :mod:`tap.published` without a migration is caught here, on the first TAP
    request of each process (cheap: one SELECT).
    """
    if _checked.is_set():
        return
    with _check_lock:
        if _checked.is_set():
            return
        want = description_digest()
        with engine.begin() as conn:
            have = conn.execute(text(
                "SELECT value FROM archive_meta.setting WHERE name = :n"),
                {"n": DIGEST_SETTING}).scalar()
            if have != want:
                conn.execute(text("SELECT pg_advisory_xact_lock(7355608, 2)"))
                sync_tap_schema(conn)
        _checked.set()


def sync_tap_schema(conn: Connection) -> None:
    """Rewrite TAP_SCHEMA and the view comments from the published description.

    Runs in the caller's transaction; readers see the old or the new content,
    never a mixture. Records the description's digest.
    """
    conn.execute(text(
        "INSERT INTO archive_meta.setting (name, value) VALUES (:n, :v) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value"),
        {"n": DIGEST_SETTING, "v": description_digest()})
    for name in ("key_columns", "keys", "columns", "tables", "schemas"):
        conn.execute(text(f"DELETE FROM tap_schema.{name}"))  # noqa: S608 - fixed names
    for si, schema in enumerate(SCHEMAS):
        conn.execute(text(
            "INSERT INTO tap_schema.schemas (schema_name, utype, description, "
            "schema_index) VALUES (:n, :u, :d, :i)"),
            {"n": schema.name, "u": schema.utype, "d": schema.description, "i": si})
        for ti, table in enumerate(schema.tables):
            conn.execute(text(
                "INSERT INTO tap_schema.tables (schema_name, table_name, table_type, "
                "utype, description, table_index) VALUES (:s, :n, :t, :u, :d, :i)"),
                {"s": schema.name, "n": table.name, "t": table.table_type,
                 "u": table.utype, "d": table.description, "i": ti})
            conn.execute(text(
                "INSERT INTO tap_schema.columns (table_name, column_name, datatype, "
                "arraysize, xtype, size, description, utype, unit, ucd, indexed, "
                "principal, std, column_index) VALUES (:t, :n, :dt, :a, :x, :s, :d, "
                ":u, :unit, :ucd, :idx, :p, :std, :ci)"),
                [{"t": table.name, "n": c.name, "dt": c.datatype, "a": c.arraysize,
                  "x": c.xtype, "s": column_size(c), "d": c.description,
                  "u": c.utype, "unit": c.unit, "ucd": c.ucd,
                  "idx": int(c.indexed), "p": int(c.principal), "std": int(c.std),
                  "ci": ci} for ci, c in enumerate(table.columns)])
            _comment(conn, table)
    for key in KEYS:
        conn.execute(text(
            "INSERT INTO tap_schema.keys (key_id, from_table, target_table, "
            "description) VALUES (:k, :f, :t, :d)"),
            {"k": key.key_id, "f": key.from_table, "t": key.target_table,
             "d": key.description})
        for from_col, target_col in key.columns:
            conn.execute(text(
                "INSERT INTO tap_schema.key_columns (key_id, from_column, "
                "target_column) VALUES (:k, :f, :t)"),
                {"k": key.key_id, "f": from_col, "t": target_col})


def _comment(conn: Connection, table: Table) -> None:
    """Write the description as DDL comments on the relation and its columns.

    A relation that a later migration creates is skipped: that migration
    synchronises again.
    """
    schema, name = table.sql_name.split(".", 1)
    kind = "TABLE" if table.table_type == "table" else "VIEW"
    rel = f"{_sql_ident(schema)}.{_sql_ident(name)}"
    if conn.execute(text("SELECT to_regclass(:r)"), {"r": rel}).scalar() is None:
        return
    # COMMENT takes no bind parameters; quote the literal the SQL way.
    conn.execute(text(f"COMMENT ON {kind} {rel} IS {_literal(table.description)}"))
    for c in table.columns:
        conn.execute(text(
            f"COMMENT ON COLUMN {rel}.{_sql_ident(c.name)} IS {_literal(_doc(c))}"))


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''").replace(":", r"\:") + "'"


def _doc(c: Column) -> str:
    extra = [f"unit {c.unit}" if c.unit else "", f"UCD {c.ucd}" if c.ucd else ""]
    tail = "; ".join(e for e in extra if e)
    return f"{c.description} [{tail}]" if tail else c.description


# --- VOSI tables (VOSI 1.1 §3.3; VODataService 1.1) ------------------------

def _column_xml(c: Column) -> str:
    parts = [f"<column><name>{escape(c.name)}</name>",
             f"<description>{escape(c.description)}</description>"]
    if c.unit:
        parts.append(f"<unit>{escape(c.unit)}</unit>")
    if c.ucd:
        parts.append(f"<ucd>{escape(c.ucd)}</ucd>")
    if c.utype:
        parts.append(f"<utype>{escape(c.utype)}</utype>")
    attrs = ""
    if c.arraysize:
        attrs += f" arraysize={quoteattr(c.arraysize)}"
    if c.xtype:
        attrs += f" extendedType={quoteattr(c.xtype)}"
    parts.append(f'<dataType xsi:type="vs:VOTableType"{attrs}>'
                 f"{escape(c.datatype)}</dataType>")
    if c.indexed:
        parts.append("<flag>indexed</flag>")
    if c.principal:
        parts.append("<flag>primary</flag>")
    if c.std:
        parts.append("<flag>std</flag>")
    parts.append("</column>")
    return "".join(parts)


def _table_xml(table: Table, detail: str, root: bool = False) -> str:
    tag = "vosi:table" if root else "table"
    ns = (f' xmlns:vosi="{VOSI_TABLES_NS}" xmlns:vs="{VS_NS}" xmlns:xsi="{XSI_NS}"'
          if root else "")
    parts = [f"<{tag}{ns} type={quoteattr(table.table_type)}>",
             f"<name>{escape(table.name)}</name>",
             f"<description>{escape(table.description)}</description>"]
    if table.utype:
        parts.append(f"<utype>{escape(table.utype)}</utype>")
    if detail != "min":
        parts += [_column_xml(c) for c in table.columns]
        for key in KEYS:
            if key.from_table == table.name:
                parts.append(
                    f"<foreignKey><targetTable>{escape(key.target_table)}</targetTable>"
                    + "".join(f"<fkColumn><fromColumn>{escape(f)}</fromColumn>"
                              f"<targetColumn>{escape(t)}</targetColumn></fkColumn>"
                              for f, t in key.columns)
                    + f"<description>{escape(key.description)}</description>"
                    "</foreignKey>")
    parts.append(f"</{tag}>")
    return "".join(parts)


def tableset_document(detail: str = "max") -> bytes:
    """Return the VOSI tableset; ``detail=min`` leaves out the columns."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n',
             f'<vosi:tableset xmlns:vosi="{VOSI_TABLES_NS}" xmlns:vs="{VS_NS}" '
             f'xmlns:xsi="{XSI_NS}">']
    for schema in SCHEMAS:
        parts.append(f"<schema><name>{escape(schema.name)}</name>"
                     f"<description>{escape(schema.description)}</description>")
        parts += [_table_xml(t, detail) for t in schema.tables]
        parts.append("</schema>")
    parts.append("</vosi:tableset>\n")
    return "".join(parts).encode()


def table_document(table: Table) -> bytes:
    """Return the VOSI document of one table, with every column."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            + _table_xml(table, "max", root=True) + "\n").encode()


def all_tables() -> Iterable[Table]:
    """Yield every published table."""
    for schema in SCHEMAS:
        yield from schema.tables
