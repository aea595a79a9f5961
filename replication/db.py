"""Connections for the replicator: session settings, timeouts and a watchdog.

Every connection gets the same text rendering settings (anchors P12), libpq
TCP keepalives and ``tcp_user_timeout`` (anchors P10).  A half-open link that
the kernel still acknowledges (a black-holing proxy, a hung peer) escapes
those, so `Watchdog` also shuts down the socket of any statement that has
waited longer than the stream's ``io_timeout``; libpq then reports the
connection as lost and the replicator reconnects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from importlib import resources

import psycopg2
import psycopg2.extensions

from replication.config import StreamConfig

log = logging.getLogger(__name__)

Connection = psycopg2.extensions.connection

SESSION_OPTIONS = (
    "-c DateStyle=ISO -c TimeZone=UTC -c extra_float_digits=3 "
    "-c IntervalStyle=postgres -c client_encoding=UTF8"
)


def connect(
    dsn: str, cfg: StreamConfig, *, replica: bool = False, purpose: str = "replicator"
) -> Connection:
    """Open a connection with the replication session settings.

    Parameters
    ----------
    dsn
        libpq DSN.
    cfg
        The stream, for its timeouts and name.
    replica
        Set ``session_replication_role = replica`` (slave side): capture and
        deny triggers and foreign-key checks do not fire.
    purpose
        Shown in ``application_name``.

    Returns
    -------
    Connection
        An open connection, not in autocommit mode.
    """
    options = SESSION_OPTIONS
    if replica:
        options += " -c session_replication_role=replica"
    conn = psycopg2.connect(
        dsn,
        connect_timeout=cfg.connect_timeout,
        keepalives=1,
        keepalives_idle=max(1, int(cfg.io_timeout / 3)),
        keepalives_interval=max(1, int(cfg.io_timeout / 9)),
        keepalives_count=3,
        tcp_user_timeout=int(cfg.io_timeout * 1000),
        options=options,
        application_name=f"vo-archive-{purpose}:{cfg.name}"[:63],
    )
    return conn


def close_quietly(conn: Connection | None) -> None:
    """Close a connection, ignoring errors from a broken one."""
    if conn is None:
        return
    with contextlib.suppress(Exception):
        conn.close()


def support_sql() -> str:
    """Return the replication support SQL (functions and state tables)."""
    return resources.files("replication").joinpath("sql/replication.sql").read_text()


class WatchdogTimeout(Exception):
    """A statement waited longer than the I/O timeout; its link was shut."""


class Watchdog:
    """Shut down the socket of a connection stuck in one operation too long.

    Parameters
    ----------
    timeout
        Seconds an operation may wait before its socket is shut down.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._watched: dict[int, tuple[Connection, float]] = {}
        self.fired = 0
        self._thread = threading.Thread(target=self._loop, name="repl-watchdog",
                                        daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def guard(self, conn: Connection, timeout: float | None = None) -> Iterator[None]:
        """Watch ``conn`` for the duration of the block."""
        deadline = time.monotonic() + (timeout or self.timeout)
        key = id(conn)
        with self._lock:
            self._watched[key] = (conn, deadline)
        fired_before = self.fired
        try:
            yield
        except psycopg2.Error as exc:
            if self.fired != fired_before and conn.closed:
                raise WatchdogTimeout(
                    f"no answer within {timeout or self.timeout:.0f} s; link shut down"
                ) from exc
            raise
        finally:
            with self._lock:
                self._watched.pop(key, None)

    def _loop(self) -> None:
        while True:
            time.sleep(min(0.2, self.timeout / 4))
            now = time.monotonic()
            with self._lock:
                late = [(k, c) for k, (c, d) in self._watched.items() if d < now]
                for k, _ in late:
                    self._watched.pop(k, None)
            for _, conn in late:
                self.fired += 1
                log.warning("connection %s: no answer within %.0f s, shutting it down",
                            conn.info.dbname if not conn.closed else "?", self.timeout)
                shutdown_socket(conn)


def shutdown_socket(conn: Connection) -> None:
    """Shut down the TCP socket under a libpq connection (unblocks any wait)."""
    with contextlib.suppress(Exception):
        fd = os.dup(conn.fileno())
        sock = socket.socket(fileno=fd)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
