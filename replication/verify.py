"""Compare a stream's tables on master and slave (``replicate verify``).

Per table: the row count and an order-independent checksum (the sum of a
64-bit slice of ``md5(row::text)`` over all rows) with the same text settings
on both sides (anchors P12); pgSphere columns, whose text has only 15 digits,
enter the hash in their exact encoding.  When they differ, the rows are
compared by primary key in one ordered pass, and the differing keys are
reported, together with the events an operator skipped (dead letters).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import psycopg2.sql as sql

from replication.config import StreamConfig
from replication.copy import exact_encoder
from replication.db import Connection, close_quietly, connect
from replication.install import primary_key, quoted_name, table_ident

log = logging.getLogger(__name__)

MAX_KEYS = 20


class VerifyError(Exception):
    """The comparison could not be made (e.g. the slave does not catch up)."""


@dataclass(slots=True)
class TableReport:
    """Comparison of one table."""

    table: str
    master_rows: int
    slave_rows: int
    master_sum: str
    slave_sum: str
    only_master: list[str] = field(default_factory=list)
    only_slave: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Whether counts and checksums agree."""
        return (self.master_rows == self.slave_rows
                and self.master_sum == self.slave_sum)


def row_hash(conn: Connection, table: str) -> sql.Composable:
    """Return the SQL of an exact md5 of the row ``t`` of ``table``.

    The row text, and for pgSphere columns (whose text has only 15 digits)
    their exact encoding too, so that a difference in the last bits shows.
    """
    encoder = exact_encoder(conn, table, "t")
    if encoder is None:
        return sql.SQL("md5(t::text)")
    return sql.SQL("md5(t::text || ({e})::text)").format(e=sql.SQL(encoder))


def _checksum(conn: Connection, table: str) -> tuple[int, str]:
    with conn.cursor() as cur:
        cur.execute(sql.SQL(
            "SELECT count(*), coalesce(sum(('x' || substr({h}, 1, 16))::bit(64)"
            "::bigint::numeric), 0)::text FROM {t} AS t"
        ).format(h=row_hash(conn, table), t=table_ident(table)))
        row = cur.fetchone()
    if row is None:
        raise AssertionError(f"the checksum of {table} returned no row")
    return int(row[0]), str(row[1])


def _keyed_rows(conn: Connection, table: str, keys: list[str]) -> sql.Composed:
    obj = sql.SQL(", ").join(
        sql.SQL("{}, t.{}").format(sql.Literal(k), sql.Identifier(k)) for k in keys
    )
    return sql.SQL(
        "SELECT jsonb_build_object({o})::text COLLATE \"C\" AS k, {h} "
        "FROM {t} AS t ORDER BY 1"
    ).format(o=obj, h=row_hash(conn, table), t=table_ident(table))


def diff_keys(master: Connection, slave: Connection, table: str,
              report: TableReport, fetch_size: int = 5000) -> None:
    """Fill the report's key lists by a merge of both sides ordered by key."""
    keys = primary_key(master, table)
    mquery, squery = _keyed_rows(master, table, keys), _keyed_rows(slave, table, keys)
    with master.cursor(name="verify_m") as mc, slave.cursor(name="verify_s") as sc:
        mc.itersize = sc.itersize = fetch_size
        mc.execute(mquery)
        sc.execute(squery)
        m, s = next(mc, None), next(sc, None)
        while m is not None or s is not None:
            if s is None or (m is not None and m[0] < s[0]):
                report.only_master.append(m[0])  # type: ignore[index]
                m = next(mc, None)
            elif m is None or s[0] < m[0]:
                report.only_slave.append(s[0])
                s = next(sc, None)
            else:
                if m[1] != s[1]:
                    report.different.append(m[0])
                m, s = next(mc, None), next(sc, None)
            if (len(report.only_master) + len(report.only_slave)
                    + len(report.different)) >= MAX_KEYS:
                break


def dead_letters(slave: Connection, cfg: StreamConfig, table: str) -> list[str]:
    """Describe the events of ``table`` that an operator skipped (this generation)."""
    with slave.cursor() as cur:
        cur.execute(
            """SELECT d.ev_id, d.ev_type, coalesce(d.row_key::text, '(all rows)'),
                      d.skipped_by, d.skipped_at, coalesce(d.reason, '')
               FROM replication.dead_letter d
               JOIN replication.stream_state s USING (stream, generation)
               WHERE d.stream = %s AND d.table_name = %s ORDER BY d.ev_id""",
            (cfg.name, quoted_name(slave, table)),
        )
        return [
            f"event {ev} ({op}) key {key} skipped by {who} at {when:%Y-%m-%d %H:%M:%S}"
            + (f": {why}" if why else "")
            for ev, op, key, who, when, why in cur.fetchall()
        ]


def wait_caught_up(master: Connection, slave: Connection, cfg: StreamConfig,
                   timeout: float) -> int:
    """Force a tick and wait until the slave has applied past it.

    Returns
    -------
    int
        The tick the slave reached.

    Raises
    ------
    VerifyError
        If the slave does not get there within ``timeout`` seconds.
    """
    master.autocommit = slave.autocommit = True
    with master.cursor() as cur:
        cur.execute("SELECT pgq.force_tick(%s)", (cfg.queue,))
        row = cur.fetchone()
    if row is None:
        raise AssertionError("pgq.force_tick returned no row")
    target = int(row[0]) + 1
    deadline = time.monotonic() + timeout
    while True:
        with slave.cursor() as cur:
            cur.execute("SELECT last_tick, last_error FROM replication.stream_state "
                        "WHERE stream = %s", (cfg.name,))
            got = cur.fetchone()
        if got is not None and got[0] >= target:
            master.autocommit = slave.autocommit = False
            return int(got[0])
        if time.monotonic() > deadline:
            err = f" (last error: {got[1]})" if got and got[1] else ""
            raise VerifyError(
                f"stream {cfg.name}: slave at tick {got[0] if got else '?'} did not "
                "reach "
                f"tick {target} within {timeout:.0f} s; is the replicator running?{err}"
            )
        time.sleep(0.1)


def verify_stream(cfg: StreamConfig, wait: bool = True,
                  timeout: float = 120.0) -> list[TableReport]:
    """Compare every table of the stream.

    Parameters
    ----------
    cfg
        The stream.
    wait
        First force a tick and wait for the slave to apply it, so that both
        sides are compared at the same point (stop the writers first).
    timeout
        Seconds to wait for the slave.

    Returns
    -------
    list of TableReport
        One report per table; `TableReport.identical` says whether it agrees.
    """
    master = connect(cfg.master, cfg, purpose="verify")
    slave = connect(cfg.slave, cfg, purpose="verify")
    try:
        if wait:
            wait_caught_up(master, slave, cfg, timeout)
        reports = []
        for table in cfg.tables:
            mrows, msum = _checksum(master, table)
            srows, ssum = _checksum(slave, table)
            rep = TableReport(table, mrows, srows, msum, ssum,
                              dead_letters=dead_letters(slave, cfg, table))
            if not rep.identical:
                diff_keys(master, slave, table, rep)
                log.warning("stream %s: table %s differs (%d vs %d rows)", cfg.name,
                            table, mrows, srows)
            reports.append(rep)
            master.rollback()
            slave.rollback()
        return reports
    finally:
        close_quietly(master)
        close_quietly(slave)
