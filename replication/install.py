"""Set a stream up (``vo-archive replicate init``).

PgQ queue and capture triggers on the master, state tables and deny triggers
on the slave.

Order matters for a gap-free start: the consumer is registered before the
capture triggers exist, and the tables are marked ``pending`` on the slave,
so the replicator copies each of them in a snapshot taken after the triggers
were committed, and skips the events that snapshot already contains.
"""

from __future__ import annotations

import hashlib
import logging

import psycopg2
import psycopg2.sql as sql

from replication.config import StreamConfig
from replication.db import Connection, close_quietly, connect, support_sql

log = logging.getLogger(__name__)


class SetupError(Exception):
    """A database is not ready to take part in a stream."""


def split_table(table: str) -> tuple[str, str]:
    """Split ``schema.table`` into its two names."""
    schema, _, name = table.partition(".")
    return schema, name


def table_ident(table: str) -> sql.Identifier:
    """Return the quoted identifier of ``schema.table``."""
    return sql.Identifier(*split_table(table))


def quoted_name(conn: Connection, table: str) -> str:
    """Return ``schema.table`` quoted by the server's ``quote_ident``.

    The capture trigger names tables this way in its events.
    """
    schema, name = split_table(table)
    with conn.cursor() as cur:
        cur.execute("SELECT quote_ident(%s) || '.' || quote_ident(%s)", (schema, name))
        row = cur.fetchone()
    if row is None:
        raise AssertionError("quote_ident returned no row")
    return str(row[0])


def primary_key(conn: Connection, table: str) -> list[str]:
    """Return the primary-key columns of ``table`` in key order.

    Raises
    ------
    SetupError
        If the table does not exist or has no primary key.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (quoted_name(conn, table),))
        row = cur.fetchone()
        if row is None or row[0] is None:
            raise SetupError(f"table {table} does not exist on {conn.info.dbname}")
        cur.execute(
            """SELECT a.attname FROM pg_index x
               CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
               WHERE x.indrelid = %s::regclass AND x.indisprimary ORDER BY k.ord""",
            (quoted_name(conn, table),),
        )
        cols = [r[0] for r in cur.fetchall()]
    if not cols:
        raise SetupError(f"table {table} has no primary key; replication needs one")
    return cols


def master_identity(conn: Connection, queue: str) -> str:
    """Return ``<system identifier>/<queue id>``: which master a slave follows."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT (SELECT system_identifier FROM pg_control_system())::text, "
            "queue_id FROM pgq.queue WHERE queue_name = %s",
            (queue,),
        )
        row = cur.fetchone()
    if row is None:
        raise SetupError(f"queue {queue} does not exist on the master")
    return f"{row[0]}/{row[1]}"


MIN_SERVER = 140000
"""PostgreSQL 14: ``CREATE OR REPLACE TRIGGER`` (and the archive's lz4 columns)."""


def check_server(version_num: int, side: str) -> None:
    """Raise `SetupError` if ``server_version_num`` is below what replication needs."""
    if version_num < MIN_SERVER:
        raise SetupError(
            f"the {side} runs PostgreSQL {version_num // 10000}; replication needs "
            f"{MIN_SERVER // 10000} or later (CREATE OR REPLACE TRIGGER)"
        )


def server_version(conn: Connection) -> int:
    """Return the server's ``server_version_num``."""
    return int(conn.info.server_version)


SUPPORT_VERSION = 2
"""Version of ``replication.sql`` this code needs (``replication.support_version``)."""


def check_support(conn: Connection, side: str) -> None:
    """Raise `SetupError` unless ``conn`` has this version's support functions.

    A replicator newer than the functions `init` installed would misread the
    row images; an older one finds its functions gone and halts.
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT to_regprocedure('replication.support_version()') IS NOT NULL"
        )
        row = cur.fetchone()
        version = 1
        if row and row[0]:
            cur.execute("SELECT replication.support_version()")
            got = cur.fetchone()
            version = int(got[0]) if got else 1
    if version != SUPPORT_VERSION:
        raise SetupError(
            f"the {side}'s replication functions are version {version}, this code "
            f"needs {SUPPORT_VERSION}: stop the replicator and run `replicate init` "
            "(replication/README.md, Upgrading)"
        )


def prepare_exact(conn: Connection, table: str, rowref: str = "NEW") -> str | None:
    """Check ``table``'s pgSphere columns and create the casts their codec needs.

    Returns
    -------
    str or None
        The table's row encoder (format "t") over the row ``rowref``; None
        only for a table without stored columns.

    Raises
    ------
    SetupError
        If a column's type has no exact encoding (see ``replication.sql``).
    """
    ref = quoted_name(conn, table)
    with conn.cursor() as cur:
        try:
            cur.execute("SAVEPOINT exact")
            cur.execute("SELECT replication.ensure_byte_casts(%s::regclass)", (ref,))
            cur.execute("SELECT replication.row_encoder(%s::regclass, %s)",
                        (ref, rowref))
            row = cur.fetchone()
            cur.execute("RELEASE SAVEPOINT exact")
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT exact")
            raise SetupError((exc.diag.message_primary or str(exc)).strip()) from None
    return None if row is None or row[0] is None else str(row[0])


def configure_queue(conn: Connection, cfg: StreamConfig) -> None:
    """Apply the stream's ticker and rotation settings to its PgQ queue."""
    settings = {
        "ticker_max_count": str(cfg.ticker_max_count),
        "ticker_max_lag": f"{cfg.ticker_max_lag} seconds",
        "ticker_idle_period": f"{cfg.ticker_idle_period} seconds",
        "rotation_period": f"{cfg.rotation_period} seconds",
    }
    with conn.cursor() as cur:
        for key, value in settings.items():
            cur.execute(
                "SELECT pgq.set_queue_config(%s, %s, %s)", (cfg.queue, key, value)
            )


def capture_function_name(stream: str, table: str) -> str:
    """Return the name of the capture function of ``table`` in ``stream``."""
    digest = hashlib.md5(table.encode(), usedforsecurity=False).hexdigest()[:12]
    return f"capture_{stream}_{digest}"


def create_capture_function(conn: Connection, cfg: StreamConfig, table: str,
                            keys: list[str]) -> sql.Identifier:
    """Create the row capture function of one table; return its name.

    The row encoder (``replication.row_encoder``) is written into the body, so
    PL/pgSQL plans it once per session, where the generic
    ``replication.capture`` would have to EXECUTE (parse and plan) it for every
    row.  The settings pin every text form whatever the writer's session says.
    The key stays ``to_jsonb`` of the old row's key columns, as in version 1.
    """
    encoder = prepare_exact(conn, table, "NEW")
    if encoder is None:
        raise SetupError(f"table {table} has no stored columns")
    old_key = sql.SQL("jsonb_build_object({})::text").format(sql.SQL(", ").join(
        sql.SQL("{}, OLD.{}").format(sql.Literal(k), sql.Identifier(k)) for k in keys
    ))
    body = sql.SQL("""
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM pgq.insert_event({queue}, 'I', ({image})::text, {tbl}, NULL,
                                 {origin}, 't');
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM pgq.insert_event({queue}, 'U', ({image})::text, {tbl}, {old_key},
                                 {origin}, 't');
    ELSE
        PERFORM pgq.insert_event({queue}, 'D', {old_key}, {tbl}, {old_key},
                                 {origin}, 't');
    END IF;
    RETURN NULL;
END;
""").format(queue=sql.Literal(cfg.queue), image=sql.SQL(encoder),
            tbl=sql.Literal(quoted_name(conn, table)), old_key=old_key,
            origin=sql.Literal(cfg.origin))
    name = sql.Identifier("replication", capture_function_name(cfg.name, table))
    with conn.cursor() as cur:
        cur.execute(sql.SQL(
            "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql "
            "SECURITY DEFINER SET search_path = pg_catalog, pg_temp "
            "SET extra_float_digits = 3 SET IntervalStyle = postgres "
            "SET DateStyle = 'ISO, YMD' SET TimeZone = 'UTC' SET bytea_output = hex "
            "AS {body}"
        ).format(name=name, body=sql.Literal(body.as_string(conn))))
        cur.execute(sql.SQL("COMMENT ON FUNCTION {name}() IS {c}").format(
            name=name, c=sql.Literal(f"replication capture of {table} into stream "
                                     f"{cfg.name} (made by `replicate init`)")))
    return name


def install_master(conn: Connection, cfg: StreamConfig) -> int:
    """Create the queue, register the consumer and add the capture triggers.

    Parameters
    ----------
    conn
        Superuser connection to the master (committed here).
    cfg
        The stream.

    Returns
    -------
    int
        The consumer's registered tick (where the slave's marker starts).
    """
    keys = {t: primary_key(conn, t) for t in cfg.tables}
    with conn.cursor() as cur:
        cur.execute(support_sql())
        cur.execute("SELECT pgq.create_queue(%s)", (cfg.queue,))
        configure_queue(conn, cfg)
        cur.execute("SELECT pgq.register_consumer(%s, %s)", (cfg.queue, cfg.consumer))
        conn.commit()
        for table, cols in keys.items():
            args = [sql.Literal(cfg.queue), sql.Literal(cfg.origin)]
            cur.execute(
                sql.SQL(
                    "CREATE OR REPLACE TRIGGER {trg} AFTER INSERT OR UPDATE OR DELETE "
                    "ON {tbl} FOR EACH ROW EXECUTE FUNCTION {fn}()"
                ).format(
                    trg=sql.Identifier(f"_repl_capture_{cfg.name}"),
                    tbl=table_ident(table),
                    fn=create_capture_function(conn, cfg, table, cols),
                )
            )
            cur.execute(sql.SQL(
                "CREATE OR REPLACE TRIGGER {trg} AFTER TRUNCATE ON {tbl} "
                "FOR EACH STATEMENT EXECUTE FUNCTION replication.capture({args})"
            ).format(trg=sql.Identifier(f"_repl_truncate_{cfg.name}"),
                     tbl=table_ident(table), args=sql.SQL(", ").join(args)))
        cur.execute(
            """SELECT s.sub_last_tick FROM pgq.subscription s
               JOIN pgq.queue q ON q.queue_id = s.sub_queue
               JOIN pgq.consumer c ON c.co_id = s.sub_consumer
               WHERE q.queue_name = %s AND c.co_name = %s""",
            (cfg.queue, cfg.consumer),
        )
        row = cur.fetchone()
    conn.commit()
    if row is None:
        raise AssertionError(f"no PgQ subscription of {cfg.consumer} on {cfg.queue}")
    log.info("stream %s: master ready (queue %s, %d tables)", cfg.name, cfg.queue,
             len(cfg.tables))
    return int(row[0])


def install_slave(conn: Connection, cfg: StreamConfig, master_id: str,
                  start_tick: int) -> list[str]:
    """Create the state tables and deny triggers; mark new tables for copy.

    Parameters
    ----------
    conn
        Superuser connection to the slave (committed here).
    cfg
        The stream.
    master_id
        `master_identity` of the master.
    start_tick
        The consumer's registered tick, used when the stream is new here.

    Returns
    -------
    list of str
        Tables newly marked ``pending`` (to be copied by the replicator).

    Raises
    ------
    SetupError
        If a table is missing, or the slave already follows another master.
    """
    for t in cfg.tables:
        primary_key(conn, t)
    added: list[str] = []
    with conn.cursor() as cur:
        cur.execute(support_sql())
        cur.execute(
            "SELECT master_id FROM replication.stream_state WHERE stream = %s FOR "
            "UPDATE",
            (cfg.name,),
        )
        row = cur.fetchone()
        if row is None:
            cur.execute(
                "INSERT INTO replication.stream_state (stream, master_id, last_tick) "
                "VALUES (%s, %s, %s)",
                (cfg.name, master_id, start_tick),
            )
        elif row[0] != master_id:
            raise SetupError(
                f"slave follows master {row[0]} for stream {cfg.name}, not "
                f"{master_id}; use `replicate restore` after losing a master"
            )
        for table in cfg.tables:
            prepare_exact(conn, table)
            cur.execute(
                "INSERT INTO replication.table_state (stream, table_name, state) "
                "VALUES (%s, %s, 'pending') ON CONFLICT DO NOTHING RETURNING "
                "table_name",
                (cfg.name, quoted_name(conn, table)),
            )
            if cur.fetchone():
                added.append(table)
            master_desc = sql.Literal(cfg.origin)
            cur.execute(
                sql.SQL(
                    "CREATE OR REPLACE TRIGGER {trg} BEFORE INSERT OR UPDATE OR DELETE "
                    "ON {tbl} FOR EACH ROW EXECUTE FUNCTION replication.deny({s}, {m})"
                ).format(
                    trg=sql.Identifier(f"_repl_deny_{cfg.name}"),
                    tbl=table_ident(table),
                    s=sql.Literal(cfg.name),
                    m=master_desc,
                )
            )
            cur.execute(sql.SQL(
                "CREATE OR REPLACE TRIGGER {trg} BEFORE TRUNCATE ON {tbl} "
                "FOR EACH STATEMENT EXECUTE FUNCTION replication.deny({s}, {m})"
            ).format(trg=sql.Identifier(f"_repl_deny_truncate_{cfg.name}"),
                     tbl=table_ident(table), s=sql.Literal(cfg.name), m=master_desc))
    conn.commit()
    log.info("stream %s: slave ready; %d table(s) to copy", cfg.name, len(added))
    return added


def init_stream(cfg: StreamConfig) -> list[str]:
    """Set up both sides of a stream (idempotent; adds new tables).

    Returns
    -------
    list of str
        Tables that the replicator will copy before applying their changes.
    """
    master = connect(cfg.master, cfg, purpose="init")
    slave = connect(cfg.slave, cfg, purpose="init")
    try:
        check_server(server_version(master), "master")
        check_server(server_version(slave), "slave")
        start = install_master(master, cfg)
        return install_slave(slave, cfg, master_identity(master, cfg.queue), start)
    finally:
        close_quietly(master)
        close_quietly(slave)


def request_resync(cfg: StreamConfig, table: str) -> None:
    """Mark one table for a fresh copy; the running replicator does it.

    Raises
    ------
    SetupError
        If the table is not part of the stream.
    """
    if table not in cfg.tables:
        raise SetupError(f"table {table} is not in stream {cfg.name}")
    conn = connect(cfg.slave, cfg, purpose="resync")
    try:
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE replication.table_state SET state = 'pending' "
                "WHERE stream = %s AND table_name = %s",
                (cfg.name, quoted_name(conn, table)),
            )
            if cur.rowcount != 1:
                raise SetupError(f"stream {cfg.name} is not initialised on the slave")
        conn.commit()
    finally:
        close_quietly(conn)
    log.info("stream %s: table %s marked for resync", cfg.name, table)
