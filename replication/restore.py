"""Rebuild a lost master from its slave, then continue (``replicate restore``).

The configured master DSN must point at the replacement database, which holds
the stream's tables (created from the schema) and nothing the old master had.
The slave's rows are copied in one slave snapshot; the key sequences are set
past every key the old master handed out (the values the replicator shipped to
the slave); PgQ is set up afresh on the new master; the slave's position is reset
to the new queue and its ``generation`` bumped.

Transaction ids (anchors P11): a replacement cluster starts its txids low,
below the snapshots the slave remembers from the old master.  Those
snapshots would then mark new changes as already copied and skip them, so the
restore clears every stored snapshot and position: the replication is
re-initialised rather than trusted across the rebuild.  A master restored
from an old base backup (same identity, rewound txids) is refused by the
replicator ("lost position") until this command is run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg2.sql as sql

from replication.config import StreamConfig
from replication.copy import copy_table
from replication.db import Connection, close_quietly, connect
from replication.install import (
    SetupError,
    install_master,
    master_identity,
    primary_key,
    quoted_name,
    table_ident,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestoreReport:
    """What a restore did."""

    stream: str
    rows: dict[str, int]
    old_master: str
    new_master: str
    generation: int
    txids_rewound: bool


def restore_master(cfg: StreamConfig, force: bool = False) -> RestoreReport:
    """Copy the slave's tables into the configured (new) master and re-arm the stream.

    Parameters
    ----------
    cfg
        The stream; ``cfg.master`` is the replacement database.
    force
        Empty the master's tables first instead of refusing when they hold rows.

    Returns
    -------
    RestoreReport
        Rows copied per table and the old and new master identities.

    Raises
    ------
    SetupError
        If the slave has no state for the stream, a table is missing, the master
        tables are not empty (without ``force``), or the slave already follows
        this master.
    """
    slave = connect(cfg.slave, cfg, replica=True, purpose="restore")
    master = connect(cfg.master, cfg, replica=True, purpose="restore")
    try:
        with slave.cursor() as cur:
            cur.execute("SELECT master_id, generation, last_xmax FROM "
                        "replication.stream_state WHERE stream = %s", (cfg.name,))
            state = cur.fetchone()
        slave.rollback()
        if state is None:
            raise SetupError(f"the slave has no state for stream {cfg.name}")
        old_master, generation, last_xmax = state
        for table in cfg.tables:
            primary_key(master, table)
            with master.cursor() as cur:
                cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {t})").format(
                    t=table_ident(table)))
                row = cur.fetchone()
            if row and row[0] and not force:
                raise SetupError(
                    f"{table} on the new master is not empty; use --force to replace it"
                )
        with master.cursor() as cur:
            cur.execute("SELECT to_regclass('pgq.queue') IS NOT NULL")
            has_pgq = cur.fetchone()
        if has_pgq and has_pgq[0]:
            with master.cursor() as cur:
                cur.execute(
                    "SELECT 1 FROM pgq.queue WHERE queue_name = %s", (cfg.queue,)
                )
                if cur.fetchone() and master_identity(master, cfg.queue) == old_master:
                    raise SetupError(
                        f"the slave already follows this master ({old_master}); "
                        "nothing to restore"
                    )
                cur.execute("SELECT pgq.drop_queue(%s, true) FROM pgq.queue "
                            "WHERE queue_name = %s", (cfg.queue, cfg.queue))
        master.commit()
        start_tick = install_master(master, cfg)
        new_master = master_identity(master, cfg.queue)
        with master.cursor() as cur:
            cur.execute("SELECT txid_current()")
            row = cur.fetchone()
        rewound = bool(last_xmax is not None and row and row[0] < last_xmax)
        if rewound:
            log.warning("stream %s: new master's txids (%s) are below the old master's "
                        "(%s); the stream is re-initialised, no old snapshot is reused",
                        cfg.name, row[0] if row else "?", last_xmax)
        master.rollback()
        slave.set_session(isolation_level="REPEATABLE READ")
        rows: dict[str, int] = {}
        for table in cfg.tables:
            with master.cursor() as cur:
                cur.execute(sql.SQL("DELETE FROM {t}").format(t=table_ident(table)))
            rows[table] = copy_table(slave, master, table, cfg.fetch_size)
            _bump_sequences(master, slave, table)
        master.commit()
        slave.rollback()
        slave.set_session(isolation_level="READ COMMITTED")
        with slave.cursor() as cur:
            cur.execute(
                """UPDATE replication.stream_state
                   SET master_id = %s, generation = generation + 1, last_tick = %s,
                       last_batch = NULL, last_tick_time = NULL, last_xmax = NULL,
                       events_applied = 0,
                       last_error = NULL, error_at = NULL
                   WHERE stream = %s""",
                (new_master, start_tick, cfg.name),
            )
            for table in cfg.tables:
                cur.execute(
                    "UPDATE replication.table_state SET state = 'ok', copy_snapshot = "
                    "NULL WHERE stream = %s AND table_name = %s",
                    (cfg.name, quoted_name(slave, table)),
                )
        slave.commit()
        log.info(
            "stream %s: master restored from the slave (%s rows); now following %s",
            cfg.name,
            sum(rows.values()),
            new_master,
        )
        return RestoreReport(cfg.name, rows, str(old_master), new_master,
                             int(generation) + 1, rewound)
    finally:
        close_quietly(master)
        close_quietly(slave)


def _bump_sequences(conn: Connection, slave: Connection, table: str) -> None:
    """Set every sequence owned by a column of ``table`` past all its keys.

    The new value is the larger of the column's maximum and the slave's copy of
    the sequence, which the replicator kept at the old master's value (anchors
    P9): keys of rows the old master deleted are not handed out again.
    """
    with conn.cursor() as cur:
        cur.execute(
            """SELECT a.attname, pg_get_serial_sequence(%s, a.attname)
               FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0
                 AND NOT a.attisdropped""",
            (table, table),
        )
        for col, seq in cur.fetchall():
            if seq is None:
                continue
            with slave.cursor() as scur:
                scur.execute("SELECT pg_sequence_last_value(to_regclass(%s))", (seq,))
                row = scur.fetchone()
            shipped = row[0] if row and row[0] is not None else 0
            cur.execute(sql.SQL(
                "SELECT setval(%s, greatest(coalesce(max({c}), 0), %s, 1)) FROM {t}"
            ).format(c=sql.Identifier(col), t=table_ident(table)), (seq, shipped))
