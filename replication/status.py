"""Per-stream status: position, backlog, lag and last error (``replicate status``)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import psycopg2

from replication.config import StreamConfig
from replication.db import close_quietly, connect

log = logging.getLogger(__name__)


@dataclass(slots=True)
class StreamStatus:
    """What `stream_status` reports for one stream.

    Attributes
    ----------
    applied_tick
        The master tick up to which the slave has applied (the marker).
    master_tick
        The master's newest tick.
    backlog_events
        Events written on the master after the applied tick (PgQ's
        ``pending_events``: an upper bound, it counts rolled-back ones too).
    lag_seconds
        Age of the oldest change not yet applied: master time since the applied
        tick when events are pending, else 0.
    last_error
        The error that halted the stream, or a connection error; None if fine.
    pending_tables
        Tables waiting for their initial copy or resync.
    """

    stream: str
    applied_tick: int | None = None
    master_tick: int | None = None
    backlog_events: int | None = None
    lag_seconds: float | None = None
    events_applied: int | None = None
    applied_at: str | None = None
    last_error: str | None = None
    error_at: str | None = None
    pending_tables: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """Return the status as a JSON-ready dict."""
        return dataclasses.asdict(self)


RESUME_CHANNEL = "replication_resume"  # the channel the replicator listens on


def request_resume(cfg: StreamConfig) -> None:
    """Wake the stream's replicator if it is waiting out a backoff (``resume``).

    A NOTIFY on the slave, where the running replicator listens: a stream halted
    by an error the operator has fixed retries at once instead of up to
    ``backoff_max`` seconds later.  Nothing happens to a stream that is fine.
    """
    slave = connect(cfg.slave, cfg, purpose="resume")
    try:
        with slave.cursor() as cur:
            cur.execute("SELECT pg_notify(%s, %s)", (RESUME_CHANNEL, cfg.name))
        slave.commit()
    finally:
        close_quietly(slave)


def stream_status(cfg: StreamConfig, wake: bool = False) -> StreamStatus:
    """Collect the status of one stream from its slave and its master.

    An unreachable side is reported in ``last_error``, never raised.

    Parameters
    ----------
    cfg
        The stream.
    wake
        If the stream is halted by an error, also ask its replicator to retry
        now (as `request_resume`): an operator checking after a fix need not
        wait for the backoff.
    """
    st = StreamStatus(cfg.name)
    errors: list[str] = []
    try:
        slave = connect(cfg.slave, cfg, purpose="status")
        try:
            with slave.cursor() as cur:
                cur.execute(
                    "SELECT last_tick, events_applied, applied_at::text, last_error, "
                    "error_at::text FROM replication.stream_state WHERE stream = %s",
                    (cfg.name,),
                )
                row = cur.fetchone()
                if row is None:
                    errors.append("stream not initialised on the slave")
                else:
                    (st.applied_tick, st.events_applied, st.applied_at,
                     err, st.error_at) = row
                    if err:
                        errors.append(err)
                        if wake:
                            cur.execute("SELECT pg_notify(%s, %s)",
                                        (RESUME_CHANNEL, cfg.name))
                            slave.commit()
                cur.execute(
                    "SELECT table_name FROM replication.table_state "
                    "WHERE stream = %s AND state = 'pending' ORDER BY 1",
                    (cfg.name,),
                )
                st.pending_tables = [r[0] for r in cur.fetchall()]
        finally:
            close_quietly(slave)
    except psycopg2.Error as exc:
        errors.append(f"slave unreachable: {str(exc).strip()}")
    try:
        master = connect(cfg.master, cfg, purpose="status")
        try:
            with master.cursor() as cur:
                cur.execute(
                    "SELECT pending_events, last_tick FROM pgq.get_consumer_info(%s, "
                    "%s)",
                    (cfg.queue, cfg.consumer),
                )
                info = cur.fetchone()
                cur.execute(
                    "SELECT max(tick_id) FROM pgq.tick t JOIN pgq.queue q "
                    "ON q.queue_id = t.tick_queue WHERE q.queue_name = %s",
                    (cfg.queue,),
                )
                top = cur.fetchone()
                st.master_tick = top[0] if top else None
                cur.execute(
                    "SELECT pgq.seq_getval(queue_event_seq) FROM pgq.queue "
                    "WHERE queue_name = %s",
                    (cfg.queue,),
                )
                seq = cur.fetchone()
                if info is not None and st.applied_tick is not None:
                    cur.execute(
                        "SELECT %s - t.tick_event_seq, "
                        "extract(epoch FROM now() - t.tick_time)::float8 "
                        "FROM pgq.tick t JOIN pgq.queue q ON q.queue_id = t.tick_queue "
                        "WHERE q.queue_name = %s AND t.tick_id = %s",
                        (seq[0] if seq else 0, cfg.queue, st.applied_tick),
                    )
                    row = cur.fetchone()
                    if row is not None:
                        st.backlog_events = max(0, int(row[0]))
                        st.lag_seconds = float(row[1]) if st.backlog_events else 0.0
                elif info is None:
                    errors.append("consumer not registered on the master")
        finally:
            close_quietly(master)
    except psycopg2.Error as exc:
        errors.append(f"master unreachable: {str(exc).strip()}")
    st.last_error = "; ".join(errors) or None
    return st
