"""Copy a table's rows between databases in bounded memory.

Rows travel as the same row images as the change events (format "t": each
column's text form, pgSphere columns in their exact encoding), built by
``replication.row_encoder`` and read back by ``replication.row_decoder``'s
``texts``, through a server-side cursor in chunks of ``fetch_size`` rows.  The
initial copy, ``resync`` and ``restore`` all come this way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import psycopg2.sql as sql

from replication.db import Connection
from replication.install import table_ident

log = logging.getLogger(__name__)

Guard = Callable[[Connection], contextlib.AbstractContextManager[None]]


def _no_guard(conn: Connection) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def row_image(conn: Connection, table: str, alias: str = "t") -> sql.Composable:
    """Return the SQL of ``table``'s row image (format "t") over the row ``alias``.

    The capture trigger builds the same image (anchors P12).
    """
    with conn.cursor() as cur:
        cur.execute("SELECT replication.row_encoder(%s::regclass, %s)",
                    (table_ident(table).as_string(conn), alias))
        row = cur.fetchone()
    if row is None or row[0] is None:
        raise AssertionError(f"replication.row_encoder gave nothing for {table}")
    return sql.SQL(str(row[0]))


def exact_encoder(conn: Connection, table: str, rowref: str) -> str | None:
    """Return the SQL building the exact encodings of ``table``'s row ``rowref``.

    None when the table has no column that needs one.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT replication.exact_encoder(%s::regclass, %s)",
                    (table_ident(table).as_string(conn), rowref))
        row = cur.fetchone()
    return None if row is None or row[0] is None else str(row[0])


def row_insert(conn: Connection, table: str) -> sql.Composed:
    """Return an INSERT of ``table`` rows from a JSON array of row images (``%s``)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT cols, texts FROM replication.row_decoder(%s::regclass)",
            (table_ident(table).as_string(conn),),
        )
        row = cur.fetchone()
    if row is None:
        raise AssertionError(f"replication.row_decoder returned no row for {table}")
    cols, texts = row
    return sql.SQL(
        "INSERT INTO {t} ({c}) SELECT {e} FROM jsonb_array_elements(%s::jsonb) AS s(j)"
    ).format(t=table_ident(table), c=sql.SQL(cols), e=sql.SQL(texts))


def copy_table(src: Connection, dst: Connection, table: str, fetch_size: int,
               guard: Guard = _no_guard) -> int:
    """Copy all rows of ``table`` from ``src`` to ``dst``.

    Neither transaction is committed or rolled back here: the caller chose the
    source snapshot and decides what else commits with the copy.  The caller
    empties the destination table first if needed.

    Parameters
    ----------
    src, dst
        Source and destination connections, each inside a transaction, both
        with the replication support functions.
    table
        ``schema.table``.
    fetch_size
        Rows per round trip.
    guard
        Context manager factory watching a connection during one statement.

    Returns
    -------
    int
        Rows copied.
    """
    tbl = table_ident(table)
    insert = row_insert(dst, table)
    image = row_image(src, table)
    total = 0
    with src.cursor(name="repl_copy") as rd, dst.cursor() as wr:
        rd.itersize = fetch_size
        with guard(src):
            rd.execute(sql.SQL("SELECT {i}::text FROM {t} AS t").format(i=image, t=tbl))
        for chunk in _chunks(rd, fetch_size, src, guard):
            with guard(dst):
                wr.execute(insert, ("[" + ",".join(chunk) + "]",))
            total += len(chunk)
    log.info("copied %d rows of %s", total, table)
    return total


def _chunks(
    cur: object, size: int, conn: Connection, guard: Guard
) -> Iterator[list[str]]:
    while True:
        with guard(conn):
            rows = cur.fetchmany(size)  # type: ignore[attr-defined]
        if not rows:
            return
        yield [r[0] for r in rows]
