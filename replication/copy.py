"""Copy a table's rows between databases in bounded memory.

Rows travel as JSON row images, the same representation as the change
events: ``to_jsonb`` plus the exact encoding of pgSphere columns
(``replication.exact_encoder``) out, ``replication.row_decoder`` in, through a
server-side cursor in chunks of ``fetch_size`` rows.
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
    """Return the SQL of ``table``'s exact JSON row image over the row ``alias``.

    ``to_jsonb`` of the row, with pgSphere columns replaced by their exact
    encoding (anchors P12); the capture trigger builds the same image.
    """
    encoder = exact_encoder(conn, table, alias)
    if encoder is None:
        return sql.SQL("to_jsonb({a})").format(a=sql.Identifier(alias))
    return sql.SQL("(to_jsonb({a}) || {e})").format(a=sql.Identifier(alias),
                                                     e=sql.SQL(encoder))


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
            "SELECT cols, exprs, exact FROM replication.row_decoder(%s::regclass)",
            (table_ident(table).as_string(conn),),
        )
        row = cur.fetchone()
    if row is None:
        raise AssertionError(f"replication.row_decoder returned no row for {table}")
    cols, exprs, exact = row
    return sql.SQL(
        "INSERT INTO {t} ({c}) SELECT {e} FROM jsonb_array_elements(%s::jsonb) AS s(j) "
        "CROSS JOIN LATERAL jsonb_populate_record(NULL::{t}, j - {x}::text[]) r"
    ).format(t=table_ident(table), c=sql.SQL(cols), e=sql.SQL(exprs),
             x=sql.Literal(list(exact)))


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
