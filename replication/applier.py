"""The replicator: ticks the master's queue and applies its batches on the slave.

Exactly-once (anchors P2): a batch is applied on the slave in one transaction
that also moves the slave's marker (``replication.stream_state.last_tick``)
from the batch's previous tick to its current tick.  Only after that commit is
``pgq.finish_batch`` called on the master.  PgQ hands an unfinished batch out
again, so after a crash or a lost commit acknowledgement the marker decides:

* marker == batch's current tick: the batch is already applied; finish it.
* marker == batch's previous tick: apply it.
* anything else: the position is lost (e.g. the master was restored from a
  backup); the stream halts and says so.

The replicator is also the queue's ticker (``pgq.ticker``), serialised by an
advisory lock, and runs PgQ's maintenance (table rotation), so no ``pgqd`` is
needed.  Fault hooks for the tests come from ``REPL_FAULT``.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import signal
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.sql as sql

from replication.config import StreamConfig
from replication.copy import copy_table
from replication.db import (
    Connection,
    Watchdog,
    WatchdogTimeout,
    close_quietly,
    connect,
)
from replication.install import (
    SetupError,
    check_support,
    configure_queue,
    master_identity,
)
from replication.snapshot import Snapshot
from replication.status import RESUME_CHANNEL

log = logging.getLogger(__name__)

CURSOR = "repl_batch"


class StreamHalted(Exception):
    """A batch cannot be applied; the stream stops until the cause is fixed."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Crash points for fault-injection tests, from ``REPL_FAULT``.

    ``REPL_FAULT`` is one of ``after_n_events:K``, ``before_slave_commit``,
    ``after_slave_commit``, ``before_copy_commit``; the process kills itself
    with SIGKILL on reaching it.  The commit hooks fire on batches with events.
    ``REPL_FAULT_STREAM`` limits it to a stream.
    """

    point: str | None = None
    count: int = 0

    @classmethod
    def from_env(cls, stream: str) -> Faults:
        """Read the fault plan of ``stream`` from the environment."""
        spec = os.environ.get("REPL_FAULT", "")
        only = os.environ.get("REPL_FAULT_STREAM")
        if not spec or (only and only != stream):
            return cls()
        point, _, arg = spec.partition(":")
        return cls(point, int(arg) if arg else 0)

    def hit(self, point: str, events: int = 0) -> None:
        """Kill this process if ``point`` is the planned crash point."""
        if self.point != point:
            return
        if point == "after_n_events" and events < self.count:
            return
        log.critical("fault injection: SIGKILL at %s (%d events)", point, events)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)


class SkipError(Exception):
    """An operator skip that cannot be done as asked (nothing was changed)."""


@dataclass(frozen=True, slots=True)
class SkipPlan:
    """Events of the open batch that an operator skips (``replicate skip``).

    Attributes
    ----------
    events
        Event ids to skip; each must be in the batch.
    batch_id
        Skip every event of this batch (it must be the open one).
    who
        Recorded as ``skipped_by``.
    reason
        Free text recorded with the dead-letter rows.
    """

    events: frozenset[int]
    batch_id: int | None
    who: str
    reason: str | None = None

    def covers(self, ev_id: int) -> bool:
        """Whether the event is to be skipped."""
        return self.batch_id is not None or ev_id in self.events


@dataclass(slots=True)
class _Batch:
    batch_id: int
    cur_tick: int
    prev_tick: int
    cur_tick_time: object


class StreamReplicator:
    """Replicate one stream until told to stop.

    Parameters
    ----------
    cfg
        The stream.
    stop
        Set to stop the loop (between batches).
    watchdog
        Shared I/O watchdog; one is made if None.
    """

    def __init__(self, cfg: StreamConfig, stop: threading.Event | None = None,
                 watchdog: Watchdog | None = None) -> None:
        self.cfg = cfg
        self.stop = stop or threading.Event()
        self.watchdog = watchdog or Watchdog(cfg.io_timeout)
        self.faults = Faults.from_env(cfg.name)
        self.master: Connection | None = None
        self.slave: Connection | None = None
        self._lock_key = zlib.crc32(cfg.queue.encode())
        self._next_maint = 0.0
        self._master_id: str | None = None
        self._support_ok: dict[str, Connection | None] = {"master": None, "slave": None}

    # -- connections -------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self, conn: Connection) -> Iterator[None]:
        with self.watchdog.guard(conn):
            yield

    def _master(self) -> Connection:
        if self.master is None or self.master.closed:
            close_quietly(self.master)
            self.master = connect(self.cfg.master, self.cfg)
            try:
                with self._guard(self.master), self.master.cursor() as cur:
                    cur.execute("SELECT to_regclass('pgq.queue') IS NOT NULL")
                    row = cur.fetchone()
                    if row and row[0]:
                        cur.execute("SELECT 1 FROM pgq.queue WHERE queue_name = %s",
                                    (self.cfg.queue,))
                        row = cur.fetchone()
                    if not (row and row[0]):
                        raise StreamHalted(
                            f"the master has no PgQ queue {self.cfg.queue}: run "
                            "`replicate init` for a new stream, or `replicate restore` "
                            "if the master was rebuilt"
                        )
                    configure_queue(self.master, self.cfg)
                    self._master_id = master_identity(self.master, self.cfg.queue)
                    self.master.commit()
            except BaseException:
                close_quietly(self.master)
                self.master = None
                raise
            log.info("stream %s: connected to master", self.cfg.name)
        return self.master

    def _slave(self) -> Connection:
        if self.slave is None or self.slave.closed:
            close_quietly(self.slave)
            self.slave = connect(self.cfg.slave, self.cfg, replica=True)
            with self._guard(self.slave), self.slave.cursor() as cur:
                # `replicate resume` (and `status` of a halted stream) notify
                # here, so a fixed stream retries at once, not after backoff.
                cur.execute(f"LISTEN {RESUME_CHANNEL}")
                self.slave.commit()
            log.info("stream %s: connected to slave", self.cfg.name)
        return self.slave

    def _check_support(self, master: Connection, slave: Connection) -> None:
        """Halt unless both sides have this code's support functions (once a link)."""
        for side, conn in (("master", master), ("slave", slave)):
            if self._support_ok[side] is conn:
                continue
            conn.rollback()
            try:
                with self._guard(conn):
                    check_support(conn, side)
            except SetupError as exc:
                raise StreamHalted(str(exc)) from None
            finally:
                if not conn.closed:
                    conn.rollback()
            self._support_ok[side] = conn

    def close(self) -> None:
        """Close both connections."""
        close_quietly(self.master)
        close_quietly(self.slave)
        self.master = self.slave = None

    # -- main loop ---------------------------------------------------------
    def run(self) -> None:
        """Replicate until `stop` is set, reconnecting with backoff."""
        backoff = self.cfg.backoff_min
        log.info("stream %s: replicator started", self.cfg.name)
        while not self.stop.is_set():
            try:
                self.tick()
                progressed = self.step()
                backoff = self.cfg.backoff_min
                if not progressed:
                    self.stop.wait(self.cfg.poll_interval)
            except StreamHalted as exc:
                log.error("stream %s halted: %s", self.cfg.name, exc)
                self._record_error(str(exc))
                self._rollback_both()
                backoff = self._backoff(backoff)
            except (psycopg2.OperationalError, psycopg2.InterfaceError,
                    WatchdogTimeout) as exc:
                if not self._connection_broken():
                    # A database error on a live connection is an apply error.
                    log.error("stream %s halted: %s", self.cfg.name, exc)
                    self._record_error(str(exc).strip())
                else:
                    log.warning("stream %s: connection problem: %s (retry in %.1f s)",
                                self.cfg.name, str(exc).strip(), backoff)
                self._rollback_both()
                backoff = self._backoff(backoff)
            except Exception as exc:
                # A database error on a live link, or a bug: never skip, halt
                # and retry the same batch later.
                if isinstance(exc, psycopg2.Error):
                    log.error("stream %s halted: %s", self.cfg.name, str(exc).strip())
                else:
                    log.exception(
                        "stream %s halted by an unexpected error", self.cfg.name
                    )
                self._rollback_both()
                self._record_error(f"{type(exc).__name__}: {str(exc).strip()}")
                backoff = self._backoff(backoff)
        self.close()
        log.info("stream %s: replicator stopped", self.cfg.name)

    def _backoff(self, backoff: float) -> float:
        """Wait ``backoff`` seconds (or until resumed); return the next backoff."""
        if self._wait(backoff):
            return self.cfg.backoff_min
        return min(backoff * 2, self.cfg.backoff_max)

    def _connection_broken(self) -> bool:
        return any(c is not None and c.closed for c in (self.master, self.slave))

    def _rollback_both(self) -> None:
        for conn in (self.master, self.slave):
            if conn is not None and not conn.closed:
                try:
                    with self._guard(conn):
                        conn.rollback()
                except psycopg2.Error:
                    close_quietly(conn)

    def _wait(self, seconds: float) -> bool:
        """Wait, but keep the master's queue ticking (the slave may be away).

        Returns
        -------
        bool
            True when an operator's ``replicate resume`` cut the wait short.
        """
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            with contextlib.suppress(psycopg2.Error, WatchdogTimeout):
                self.tick()
            if self._resume_requested():
                log.info("stream %s: resume requested; retrying now", self.cfg.name)
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.stop.wait(min(left, max(self.cfg.ticker_max_lag, 0.1)))
        return False

    def _resume_requested(self) -> bool:
        """Whether a resume was notified on the slave for this stream."""
        slave = self.slave
        if slave is None or slave.closed:
            return False
        try:
            with self._guard(slave):
                slave.poll()
        except (psycopg2.Error, WatchdogTimeout):
            return False
        asked = any(n.channel == RESUME_CHANNEL and n.payload in ("", self.cfg.name)
                    for n in slave.notifies)
        slave.notifies.clear()
        return asked

    def _record_error(self, message: str) -> None:
        """Store the error in the slave's stream state for `status` (best effort)."""
        try:
            slave = self._slave()
            with self._guard(slave), slave.cursor() as cur:
                slave.rollback()
                cur.execute(
                    "UPDATE replication.stream_state SET last_error = %s, error_at = "
                    "now() WHERE stream = %s",
                    (message[:4000], self.cfg.name),
                )
                slave.commit()
        except (psycopg2.Error, WatchdogTimeout) as exc:
            log.warning("stream %s: cannot record the error on the slave: %s",
                        self.cfg.name, str(exc).strip())

    # -- ticker and maintenance ------------------------------------------
    def tick(self) -> None:
        """Run PgQ's ticker for the queue, and its maintenance when due.

        ``pgq.ticker`` cuts a tick only when enough events or time have passed
        (the queue's ticker settings).  Two tickers at once could store ticks
        whose snapshots are out of order, so each call holds an advisory lock
        taken in an earlier statement than the one taking the snapshot.
        """
        master = self._master()
        try:
            with self._guard(master), master.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                cur.execute("SELECT pgq.ticker(%s)", (self.cfg.queue,))
                master.commit()
        except psycopg2.Error:
            if not master.closed:
                master.rollback()
            raise
        if time.monotonic() >= self._next_maint:
            self._maintain(master)
            self._next_maint = time.monotonic() + self.cfg.maint_interval

    def _maintain(self, master: Connection) -> None:
        with self._guard(master), master.cursor() as cur:
            cur.execute("SELECT func_name, func_arg FROM pgq.maint_operations()")
            ops = cur.fetchall()
            master.commit()
        for func, arg in ops:
            if func == "vacuum":
                continue  # autovacuum looks after the small PgQ tables
            if (
                func.startswith("pgq.maint_rotate_tables_step1")
                and arg != self.cfg.queue
            ):
                continue
            if func not in (
                "pgq.maint_rotate_tables_step1",
                "pgq.maint_rotate_tables_step2",
                "pgq.maint_retry_events",
            ):
                continue
            with self._guard(master), master.cursor() as cur:
                name = sql.SQL(".").join(sql.Identifier(p) for p in func.split("."))
                if arg is None:
                    cur.execute(sql.SQL("SELECT {f}()").format(f=name))
                else:
                    cur.execute(sql.SQL("SELECT {f}(%s)").format(f=name), (arg,))
                master.commit()
            log.debug("stream %s: maintenance %s(%s)", self.cfg.name, func, arg or "")

    # -- one unit of work ----------------------------------------------------
    def step(self) -> bool:
        """Copy one pending table or apply one batch.

        Returns
        -------
        bool
            Whether there was work to do.

        Raises
        ------
        StreamHalted
            If the batch or copy cannot be applied.
        """
        slave = self._slave()
        with self._guard(slave), slave.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM replication.table_state "
                "WHERE stream = %s AND state = 'pending' ORDER BY table_name",
                (self.cfg.name,),
            )
            pending = [r[0] for r in cur.fetchall()]
            slave.rollback()  # read only; the slave's next COMMIT is a batch's
        if pending:
            self.copy_pending(pending)
            return True
        batch = self._next_batch()
        if batch is None:
            return False
        self.apply_batch(batch)
        return True

    def _next_batch(self) -> _Batch | None:
        master = self._master()
        with self._guard(master), master.cursor() as cur:
            cur.execute(
                "SELECT batch_id, cur_tick_id, prev_tick_id, cur_tick_time "
                "FROM pgq.next_batch_info(%s, %s)",
                (self.cfg.queue, self.cfg.consumer),
            )
            row = cur.fetchone()
            # Commit at once: the batch's ticks are then fixed, and a crash
            # gets this same batch again, which the slave's marker recognises.
            master.commit()
        if row is None or row[0] is None:
            return None
        return _Batch(int(row[0]), int(row[1]), int(row[2]), row[3])

    def _lock_marker(self, cur: psycopg2.extensions.cursor) -> tuple[int, int, str]:
        cur.execute(
            "SELECT last_tick, generation, master_id FROM replication.stream_state "
            "WHERE stream = %s FOR UPDATE",
            (self.cfg.name,),
        )
        row = cur.fetchone()
        if row is None:
            raise StreamHalted(
                f"stream {self.cfg.name} is not initialised on the slave "
                "(run `replicate init`)"
            )
        if row[2] != self._master_id:
            raise StreamHalted(
                f"slave follows master {row[2]}, but the configured master is "
                f"{self._master_id}; run `replicate restore` if the master was rebuilt"
            )
        return int(row[0]), int(row[1]), str(row[2])

    def apply_batch(self, batch: _Batch, skip: SkipPlan | None = None) -> bool:
        """Apply one PgQ batch on the slave, then finish it on the master.

        Parameters
        ----------
        batch
            The batch PgQ hands out.
        skip
            Events not to apply; each gets a ``replication.dead_letter`` row
            in the same slave transaction as the marker (anchors P7).

        Returns
        -------
        bool
            True if applied now, False if the slave already had it.

        Raises
        ------
        StreamHalted
            If the position is lost or an event cannot be applied.
        SkipError
            If ``skip`` names a batch or event that is not the open batch's.
        """
        if skip is not None and skip.batch_id not in (None, batch.batch_id):
            raise SkipError(f"batch {skip.batch_id} is not the open batch of stream "
                            f"{self.cfg.name} (that is batch {batch.batch_id})")
        master, slave = self._master(), self._slave()
        self._check_support(master, slave)
        name = self.cfg.name
        with self._guard(slave), slave.cursor() as scur:
            marker, generation, _ = self._lock_marker(scur)
        if marker == batch.cur_tick:
            log.info("stream %s: batch %d (tick %d) already applied; finishing it",
                     name, batch.batch_id, batch.cur_tick)
            slave.rollback()
            self._finish(batch)
            return False
        if marker != batch.prev_tick:
            raise StreamHalted(
                f"lost position: slave is at tick {marker}, master offers batch "
                f"{batch.batch_id} for ticks {batch.prev_tick}..{batch.cur_tick}"
            )
        with self._guard(slave), slave.cursor() as scur:
            scur.execute(
                "SELECT table_name, state, copy_snapshot FROM replication.table_state "
                "WHERE stream = %s",
                (name,),
            )
            tables = {t: (st, Snapshot.parse(snap) if snap else None)
                      for t, st, snap in scur.fetchall()}
            error = None
            if skip is not None:
                scur.execute("SELECT last_error FROM replication.stream_state "
                             "WHERE stream = %s", (name,))
                row = scur.fetchone()
                if row is None:
                    raise AssertionError(f"stream {name} has no stream_state row")
                error = row[0]
        with self._guard(master), master.cursor() as mcur:
            mcur.execute(
                "SELECT txid_snapshot_xmax(tick_snapshot) FROM pgq.tick t "
                "JOIN pgq.queue q ON q.queue_id = t.tick_queue "
                "WHERE q.queue_name = %s AND t.tick_id = %s",
                (self.cfg.queue, batch.cur_tick),
            )
            xmax_row = mcur.fetchone()
            # Columns as pgq.event_template: the FETCHes below return them all.
            mcur.execute(
                "SELECT * FROM pgq.get_batch_cursor(%s, %s, %s)",
                (batch.batch_id, CURSOR, self.cfg.fetch_size),
            )
            rows = mcur.fetchall()
        applied = skipped = 0
        found: set[int] = set()
        with slave.cursor() as scur, master.cursor() as mcur:
            while rows:
                fetched = len(rows)
                if skip is not None:
                    found |= self._dead_letter(
                        scur, rows, skip, generation, batch, error
                    )
                    rows = [r for r in rows if not skip.covers(int(r[0]))]
                n, s = self._apply_chunk(scur, rows, tables, generation, batch)
                applied += n
                skipped += s
                self.faults.hit("after_n_events", applied)
                if fetched < self.cfg.fetch_size:
                    break
                with self._guard(master):
                    mcur.execute(f"FETCH {int(self.cfg.fetch_size)} FROM {CURSOR}")
                    rows = mcur.fetchall()
            with self._guard(master):
                mcur.execute(f"CLOSE {CURSOR}")
            if skip is not None and skip.events - found:
                missing = ", ".join(str(e) for e in sorted(skip.events - found))
                raise SkipError(
                    f"event {missing} is not in the open batch {batch.batch_id} "
                    f"(ticks {batch.prev_tick}..{batch.cur_tick}) of stream "
                    f"{name}; nothing was skipped"
                )
            if applied:
                self.ship_sequences(master, slave)
            with self._guard(slave):
                scur.execute(
                    """UPDATE replication.stream_state
                       SET last_tick = %s, last_batch = %s, last_tick_time = %s,
                           last_xmax = %s, applied_at = now(),
                           events_applied = events_applied + %s,
                           last_error = NULL, error_at = NULL
                       WHERE stream = %s""",
                    (batch.cur_tick, batch.batch_id, batch.cur_tick_time,
                     xmax_row[0] if xmax_row else None, applied, name),
                )
        if applied:
            self.faults.hit("before_slave_commit")
        with self._guard(slave):
            slave.commit()
        if applied:
            self.faults.hit("after_slave_commit")
        if applied or skipped:
            log.info(
                "stream %s: batch %d applied (ticks %d..%d, %d events, %d skipped)",
                name,
                batch.batch_id,
                batch.prev_tick,
                batch.cur_tick,
                applied,
                skipped,
            )
        self._finish(batch)
        return True

    def _events_in_batch(self, batch: _Batch, events: list[int]) -> set[int]:
        """Return which of ``events`` belong to the batch."""
        master = self._master()
        with self._guard(master), master.cursor() as cur:
            cur.execute("SELECT pgq.batch_event_sql(%s)", (batch.batch_id,))
            row = cur.fetchone()
            if row is None:
                raise AssertionError("pgq.batch_event_sql returned no row")
            # PgQ's own SQL for the batch's events (built from its tick
            # snapshots), filtered; no outside text enters it.
            cur.execute(
                sql.SQL("SELECT ev_id FROM ({q}) e WHERE ev_id = ANY(%s)").format(
                    q=sql.SQL(row[0])
                ),
                (list(events),),
            )
            found = {int(r[0]) for r in cur.fetchall()}
        master.commit()
        return found

    def _dead_letter(self, scur: psycopg2.extensions.cursor,
                     rows: list[tuple[Any, ...]],
                     skip: SkipPlan, generation: int, batch: _Batch,
                     error: str | None) -> set[int]:
        """Record the skipped events of a chunk; return their ids."""
        dead = [r for r in rows if skip.covers(int(r[0]))]
        if not dead:
            return set()
        ids = [int(r[0]) for r in dead]
        with self._guard(scur.connection):
            scur.execute(
                """INSERT INTO replication.dead_letter (stream, generation, ev_id,
                       batch_id, tick_id, ev_type, table_name, row_key, row_data, error,
                       skipped_by, reason)
                   SELECT %s, %s, e.id, %s, %s, e.typ, e.tab,
                          CASE WHEN e.typ <> 'R' THEN coalesce(e.key::jsonb,
                               replication.row_key(e.tab, e.data::jsonb)) END,
                          e.data::jsonb, %s,
                          %s || ' (database user ' || session_user || ')',
                          %s
                   FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[],
                               %s::text[]) AS e(id, typ, tab, data, key)""",
                (
                    self.cfg.name,
                    generation,
                    batch.batch_id,
                    batch.cur_tick,
                    error,
                    skip.who,
                    skip.reason,
                    ids,
                    [r[4] for r in dead],
                    [r[6] for r in dead],
                    [r[5] for r in dead],
                    [r[7] for r in dead],
                ),
            )
        for r in dead:
            log.warning("stream %s: event %s (%s) on table %s, key %s skipped by %s; "
                        "dead-letter row written", self.cfg.name, r[0], r[4], r[6],
                        r[7] or r[5], skip.who)
        return set(ids)

    def _apply_chunk(self, scur: psycopg2.extensions.cursor,
                     rows: list[tuple[Any, ...]],
                     tables: dict[str, tuple[str, Snapshot | None]], generation: int,
                     batch: _Batch) -> tuple[int, int]:
        ids: list[int] = []
        types: list[str] = []
        names: list[str] = []
        data: list[str | None] = []
        keys: list[str | None] = []
        formats: list[str | None] = []
        skipped = 0
        for ev_id, _time, txid, _retry, ev_type, ev_data, table, key, _origin, fmt in (
            r[:10] for r in rows
        ):
            known = tables.get(table)
            if known is None:
                raise StreamHalted(
                    f"event {ev_id} ({ev_type}) on table {table}, key "
                    f"{key or ev_data}: table is not part of the stream on the slave"
                )
            state, snap = known
            if state == "pending" or (snap is not None and snap.visible(int(txid))):
                # The table's copy already holds (or will hold) this change.
                skipped += 1
                continue
            ids.append(int(ev_id))
            types.append(ev_type)
            names.append(table)
            data.append(ev_data)
            keys.append(key)
            formats.append(fmt)
        if ids:
            with self._guard(scur.connection):
                try:
                    scur.execute(
                        "SELECT replication.apply_events(%s, %s, %s, %s, %s, "
                        "%s::text[])",
                        (ids, types, names, data, keys, formats),
                    )
                except psycopg2.Error as exc:
                    if scur.connection.closed:
                        raise
                    raise StreamHalted(_describe(exc)) from exc
                if self.cfg.journal:
                    scur.execute(
                        "INSERT INTO replication.journal (stream, generation, ev_id, "
                        "tick_id) SELECT %s, %s, unnest(%s::bigint[]), %s",
                        (self.cfg.name, generation, ids, batch.cur_tick),
                    )
        return len(ids), skipped

    def ship_sequences(self, master: Connection, slave: Connection) -> None:
        """Set the slave's key sequences to the master's values (anchors P9).

        The sequences owned by columns of the stream's tables (serial and
        identity keys) are read on the master after the batch's tick, so each
        value is at least every key the batch (or copy) carries; setting them on
        the slave keeps ``nextval`` past every key the master ever handed out,
        for a promotion or a `restore`.  ``setval`` is not transactional: a
        batch that rolls back may leave the slave's value ahead, never behind.
        """
        with self._guard(master), master.cursor() as mcur:
            mcur.execute(
                """SELECT format('%%I.%%I', n.nspname, c.relname),
                          pg_sequence_last_value(c.oid)
                   FROM pg_depend d
                   JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S'
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE d.classid = 'pg_class'::regclass
                     AND d.refclassid = 'pg_class'::regclass
                     AND d.refobjid = ANY(%s::regclass[]) AND d.deptype IN ('a', 'i')
                   ORDER BY 1""",
                ([sql.Identifier(*t.split(".", 1)).as_string(master)
                  for t in self.cfg.tables],),
            )
            seqs = [
                (name, value) for name, value in mcur.fetchall() if value is not None
            ]
        if not seqs:
            return
        with self._guard(slave), slave.cursor() as scur:
            scur.execute(
                "SELECT setval(s::regclass, v) FROM unnest(%s::text[], %s::bigint[]) "
                "AS x(s, v)",
                ([n for n, _ in seqs], [v for _, v in seqs]),
            )

    def _finish(self, batch: _Batch) -> None:
        master = self._master()
        with self._guard(master), master.cursor() as cur:
            cur.execute("SELECT pgq.finish_batch(%s)", (batch.batch_id,))
            master.commit()

    # -- initial copy / resync -------------------------------------------------
    def copy_pending(self, tables: list[str]) -> None:
        """Copy the pending tables in one master snapshot and one slave transaction.

        The slave's rows are replaced in one transaction that also marks the
        tables ``ok`` with the copy's snapshot; events of transactions visible
        in it are skipped later (anchors P6).  Copying all pending tables at
        once keeps foreign keys between them consistent on the slave.
        """
        master, slave = self._master(), self._slave()
        self._check_support(master, slave)
        master.rollback()
        with self._guard(master), master.cursor() as mcur:
            mcur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            mcur.execute("SELECT pg_current_snapshot()::text")
            row = mcur.fetchone()
            if row is None:
                raise AssertionError("pg_current_snapshot returned no row")
            snapshot = str(row[0])
        with self._guard(slave), slave.cursor() as scur:
            self._lock_marker(scur)
            scur.execute(
                "SELECT table_name FROM replication.table_state WHERE stream = %s "
                "AND table_name = ANY(%s) AND state = 'pending' ORDER BY table_name "
                "FOR UPDATE",
                (self.cfg.name, tables),
            )
            still = [r[0] for r in scur.fetchall()]
            if not still:
                slave.rollback()
                master.rollback()
                return
            for table in still:
                scur.execute(sql.SQL("DELETE FROM {t}").format(t=sql.SQL(table)))
        copied: dict[str, int] = {}
        for table in still:
            try:
                copied[table] = copy_table(master, slave, _unquote(table),
                                           self.cfg.fetch_size, self._guard)
            except psycopg2.Error as exc:
                if slave.closed or master.closed:
                    raise
                raise StreamHalted(f"copy of {table} failed: {_describe(exc)}") from exc
        with self._guard(slave), slave.cursor() as scur:
            for table, n in copied.items():
                scur.execute(
                    "UPDATE replication.table_state SET state = 'ok', copy_snapshot = "
                    "%s, copied_at = now(), rows_copied = %s WHERE stream = %s AND "
                    "table_name = %s",
                    (snapshot, n, self.cfg.name, table),
                )
        self.ship_sequences(master, slave)
        self.faults.hit("before_copy_commit")
        with self._guard(slave):
            slave.commit()
        master.rollback()
        for table, n in copied.items():
            log.info("stream %s: table %s copied (%d rows, snapshot %s)", self.cfg.name,
                     table, n, snapshot)


def _unquote(quoted: str) -> str:
    """Turn a ``quote_ident``-ed ``schema.table`` back into plain names."""
    out: list[str] = []
    buf = ""
    inq = False
    i = 0
    while i < len(quoted):
        ch = quoted[i]
        if inq:
            if ch == '"' and quoted[i + 1:i + 2] == '"':
                buf += '"'
                i += 1
            elif ch == '"':
                inq = False
            else:
                buf += ch
        elif ch == '"':
            inq = True
        elif ch == ".":
            out.append(buf)
            buf = ""
        else:
            buf += ch
        i += 1
    out.append(buf)
    return ".".join(out)


def _describe(exc: psycopg2.Error) -> str:
    """Return a one-line description of a database error, with its detail."""
    diag = exc.diag
    text = (diag.message_primary or str(exc)).strip()
    if diag.message_detail:
        text += f" ({diag.message_detail.strip()})"
    return text


def operator_skip(cfg: StreamConfig, events: list[int], batch_id: int | None,
                  reason: str | None = None) -> tuple[int, list[int]]:
    """Apply the stream's open batch without the given events (``replicate skip``).

    The skipped events get dead-letter rows in the slave transaction that
    applies the rest of the batch and moves the marker; a running replicator
    is not disturbed (the marker lock serialises the two, and whichever comes
    second finds the batch applied).

    Parameters
    ----------
    cfg
        The stream.
    events
        Event ids to skip (each must be in the open batch).
    batch_id
        Skip the whole batch instead; it must be the open one.
    reason
        Recorded with the dead-letter rows.

    Returns
    -------
    tuple
        The batch id and the event ids written as dead letters.

    Raises
    ------
    SkipError
        If there is no open batch, it is not the one named, an event is not in
        it, or the batch got applied meanwhile.
    StreamHalted
        If another event of the batch cannot be applied either.
    """
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    plan = SkipPlan(frozenset(events), batch_id, who, reason)
    rep = StreamReplicator(cfg)
    try:
        batch = rep._next_batch()
        if batch is None:
            raise SkipError(f"stream {cfg.name} has no open batch on the master; "
                            "nothing to skip")
        if events:
            missing = set(events) - rep._events_in_batch(batch, events)
            if missing:
                raise SkipError(
                    f"event {', '.join(map(str, sorted(missing)))} is not in the open "
                    f"batch {batch.batch_id} (ticks "
                    f"{batch.prev_tick}..{batch.cur_tick}) "
                    f"of stream {cfg.name}; nothing was skipped"
                )
        if not rep.apply_batch(batch, skip=plan):
            raise SkipError(f"batch {batch.batch_id} was applied meanwhile (by the "
                            "running replicator); nothing was skipped")
        slave = rep._slave()
        with slave.cursor() as cur:
            cur.execute("SELECT ev_id FROM replication.dead_letter WHERE stream = %s "
                        "AND batch_id = %s ORDER BY ev_id", (cfg.name, batch.batch_id))
            dead = [int(r[0]) for r in cur.fetchall()]
        slave.rollback()
        return batch.batch_id, dead
    finally:
        rep.close()
