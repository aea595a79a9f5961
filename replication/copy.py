"""Copy a table's rows between databases in bounded memory.

Rows travel as JSON (``to_jsonb`` out, ``jsonb_populate_recordset`` in), the
same representation as the change events, through a server-side cursor in
chunks of ``fetch_size`` rows.
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


def column_list(conn: Connection, table: str) -> sql.Composed:
    """Return the stored (non-generated) columns of ``table`` as SQL."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT attname FROM pg_attribute
               WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped
                 AND attgenerated = '' ORDER BY attnum""",
            (str(table_ident(table).as_string(conn)),),
        )
        cols = [r[0] for r in cur.fetchall()]
    return sql.SQL(", ").join(sql.Identifier(c) for c in cols)


def copy_table(src: Connection, dst: Connection, table: str, fetch_size: int,
               guard: Guard = _no_guard) -> int:
    """Copy all rows of ``table`` from ``src`` to ``dst``.

    Neither transaction is committed or rolled back here: the caller chose the
    source snapshot and decides what else commits with the copy.  The caller
    empties the destination table first if needed.

    Parameters
    ----------
    src, dst
        Source and destination connections, each inside a transaction.
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
    cols = column_list(dst, table)
    insert = sql.SQL(
        "INSERT INTO {t} ({c}) SELECT {c} FROM jsonb_populate_recordset(NULL::{t}, %s::jsonb)"
    ).format(t=tbl, c=cols)
    total = 0
    with src.cursor(name="repl_copy") as rd, dst.cursor() as wr:
        rd.itersize = fetch_size
        with guard(src):
            rd.execute(sql.SQL("SELECT to_jsonb(t)::text FROM {t} AS t").format(t=tbl))
        for chunk in _chunks(rd, fetch_size, src, guard):
            with guard(dst):
                wr.execute(insert, ("[" + ",".join(chunk) + "]",))
            total += len(chunk)
    log.info("copied %d rows of %s", total, table)
    return total


def _chunks(cur: object, size: int, conn: Connection, guard: Guard) -> Iterator[list[str]]:
    while True:
        with guard(conn):
            rows = cur.fetchmany(size)  # type: ignore[attr-defined]
        if not rows:
            return
        yield [r[0] for r in rows]
