"""Reads on hot standbys: which database server answers a read-only request.

The primary takes every write: ingest, uploads, jobs' state, accounts and
sessions, replication, classification results. Hot standbys of it
(PostgreSQL's own streaming replication, configured as ``read_dsns``) answer
the read-only work: SCS, SIA, SSA, TAP queries (sync, and async in the job
workers), DataLink, pages and downloads' metadata. Each read goes to a healthy
standby, in turn (round robin), and to the primary when none is healthy.

A thread per standby (in each process that reads) checks it every
``standby_check_interval`` seconds: whether it answers, is still a standby,
and how far behind the primary it is. The lag is timed against the primary's
WAL position: a standby that has replayed up to position R is behind since
the first moment the primary was seen past R (:class:`LagClock`), so that a
standby whose WAL receiver stopped, or whose replay is paused, is seen to fall
behind even though it has nothing left to replay. A standby more than
``max_standby_lag`` seconds behind, or not answering, is left out until a check
finds it well again.

A read that fails because its standby cannot be reached (refused, dropped,
shutting down, out of connection slots, a recovery conflict) is sent again,
before any row reaches the client, to the next standby and at last to the
primary (:meth:`ReadNodes.run`); the failed standby is left out until its next
good check. Without ``read_dsns`` every read goes to the primary's engine, as
it always did.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg2
import psycopg2.errors
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from vo_archive.config import Settings
from vo_archive.db.engine import engine_for, primary_dsn
from vo_archive.db.outage import driver_error

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a connection to a standby may take before the standby is given up.
CONNECT_TIMEOUT_S = 2
#: Seconds the first read of a process waits at most for the first checks.
FIRST_CHECK_S = 10.0
#: What a check asks a standby.
CHECK_SQL = (
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
    "pg_last_wal_receive_lsn()::text, "
    "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8")
PRIMARY_SQL = "SELECT pg_current_wal_lsn()::text"
#: SQLSTATEs of a server that cannot answer now (another node may): too many
#: connections, and a query cancelled by a conflict with recovery on a standby.
_NODE_STATES = frozenset({"53300", "40001"})
_ELSEWHERE = (psycopg2.errors.AdminShutdown, psycopg2.errors.CrashShutdown,
              psycopg2.errors.CannotConnectNow, psycopg2.errors.TooManyConnections,
              psycopg2.errors.SerializationFailure)


def parse_lsn(text: str | None) -> int | None:
    """Return a WAL position (``'16/B374D848'``) as a number; None for None."""
    if not text:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


class LagClock:
    """When the primary was first seen at each WAL position, to time a lag.

    Parameters
    ----------
    keep_s
        Seconds of history kept; a standby further behind than that is
        reported about ``keep_s`` behind (keep it above the lag bound).
    """

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._seen: deque[tuple[float, int]] = deque()

    def see(self, at: float, lsn: int) -> None:
        """Record the primary's WAL position at monotonic time ``at``."""
        if not self._seen or lsn > self._seen[-1][1]:
            self._seen.append((at, lsn))
        # the oldest kept position stays the bound of anything older
        while len(self._seen) > 1 and self._seen[1][0] < at - self.keep_s:
            self._seen.popleft()

    def behind(self, replayed: int, now: float) -> float:
        """Return for how long a standby replayed up to ``replayed`` has been behind.

        That is the time since the primary was first seen past ``replayed``:
        what the primary held then is not yet visible on the standby.
        """
        for at, lsn in self._seen:
            if lsn > replayed:
                return max(0.0, now - at)
        return 0.0


def node_failure(error: BaseException) -> bool:
    """Return whether ``error`` says the server cannot answer, so another might.

    Connection failures (refused, dropped, timed out), a server shutting down
    or starting (SQLSTATE class 57P), out of connection slots (53300) and a
    query a standby cancelled for a conflict with recovery (40001) count; a
    query's own errors and its statement timeout (57014) do not: another node
    would answer the same.
    """
    found = driver_error(error)
    if found is None:
        return True  # this node's pool is exhausted, or its connection lost
    error = found
    if isinstance(error, _ELSEWHERE):
        return True
    if not isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return False
    code = error.pgcode
    if code is None:
        # no SQLSTATE: the connection itself failed (refused, dropped, closed)
        return type(error) in (psycopg2.OperationalError, psycopg2.InterfaceError)
    return code.startswith("57P") or code in _NODE_STATES


def display_dsn(dsn: str) -> str:
    """Return where a DSN points (``host:port/database``), without its password."""
    try:
        if "://" in dsn:
            url = make_url(dsn.replace("postgres://", "postgresql://", 1))
            return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"
        parts = dict(p.split("=", 1) for p in dsn.split() if "=" in p)
        return (f"{parts.get('host', 'localhost')}:{parts.get('port', '5432')}/"
                f"{parts.get('dbname', '')}")
    except ValueError:
        return "(unreadable DSN)"


@dataclass
class NodeState:
    """What is known of one standby."""

    dsn: str
    healthy: bool = False
    lag_s: float | None = None
    note: str = "not checked yet"
    #: Monotonic time at which the last check that got an answer started.
    checked_at: float = -1.0
    #: Monotonic time at which a read last failed on this standby.
    failed_at: float = -1.0
    first_check: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """A node as ``vo-archive db status`` shows it."""

    role: str
    where: str
    healthy: bool
    lag_s: float | None
    note: str


class ReadNodes:
    """The primary and its standbys, as one process reads from them.

    Parameters
    ----------
    primary
        The primary's DSN.
    standbys
        The standbys' DSNs (may be empty: every read goes to the primary).
    max_lag_s
        Seconds a standby may be behind before it is left out.
    interval_s
        Seconds between two checks of a standby.
    watch
        Whether to start the checking threads (and wait, briefly, for their
        first round): False for a one-off look (:func:`check_nodes`).
    """

    def __init__(self, primary: str, standbys: tuple[str, ...], max_lag_s: float,
                 interval_s: float, watch: bool = True) -> None:
        self.primary = primary
        self.nodes = [NodeState(dsn) for dsn in standbys]
        self.max_lag_s = max_lag_s
        self.interval_s = interval_s
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # a check that has not come back for this long means a hung node (or
        # a starved process: not too eager)
        self._stale_s = max(FIRST_CHECK_S, 3 * interval_s + CONNECT_TIMEOUT_S + 1)
        if watch and self.nodes:
            for node in self.nodes:
                threading.Thread(target=self._watch, args=(node,), daemon=True,
                                 name=f"standby-check {display_dsn(node.dsn)}"
                                 ).start()
            # the first reads wait for the first checks: a refused or healthy
            # node answers at once, one that does not after CONNECT_TIMEOUT_S
            deadline = time.monotonic() + FIRST_CHECK_S
            for node in self.nodes:
                node.first_check.wait(max(0.0, deadline - time.monotonic()))

    # -- choosing ----------------------------------------------------------
    def usable(self, node: NodeState, now: float | None = None) -> bool:
        """Return whether reads may go to ``node`` now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return (node.healthy and node.checked_at > node.failed_at
                    and now - node.checked_at < self._stale_s)

    def order(self, pre_ping: bool = True) -> list[tuple[NodeState | None, Engine]]:
        """Return the nodes to try for one read: healthy standbys, then the primary.

        The standbys start at the next one in turn, so that reads spread over
        them. ``None`` stands for the primary.
        """
        now = time.monotonic()
        ok = [n for n in self.nodes if self.usable(n, now)]
        if len(ok) > 1:
            k = next(self._turn) % len(ok)
            ok = ok[k:] + ok[:k]
        out: list[tuple[NodeState | None, Engine]] = [
            (n, engine_for(n.dsn, pre_ping, CONNECT_TIMEOUT_S)) for n in ok]
        out.append((None, engine_for(self.primary, pre_ping)))
        return out

    def engine(self, pre_ping: bool = True) -> Engine:
        """Return the engine of the node the next read should use."""
        return self.order(pre_ping)[0][1]

    def run(self, read: Callable[[Engine], T], pre_ping: bool = True) -> T:
        """Call ``read`` with a node's engine; on a node failure, with the next.

        Parameters
        ----------
        read
            Does the read-only work with the engine it is given and returns
            before anything reaches the client (it may return an open result
            whose first rows were read).
        pre_ping
            Which of each node's engines (see
            :func:`vo_archive.db.engine.get_engine`).

        Raises
        ------
        Exception
            What ``read`` raised: at once when it is not a node failure
            (:func:`node_failure`), otherwise the primary's own failure.
        """
        order = self.order(pre_ping)
        for node, engine in order:
            if node is None:
                return read(engine)
            try:
                return read(engine)
            except Exception as error:
                if not node_failure(error):
                    raise
                self.failed(node, error)
        raise AssertionError("the primary is always the last node")

    def failed(self, node: NodeState, error: BaseException) -> None:
        """Leave ``node`` out until its next good check."""
        with self._lock:
            node.failed_at = time.monotonic()
            node.healthy = False
            node.note = f"a read failed: {_first_line(error)}"
        log.warning("standby %s failed a read; reading elsewhere: %s",
                    display_dsn(node.dsn), _first_line(error))

    def close(self) -> None:
        """Stop the checking threads."""
        self._stop.set()

    # -- checking ----------------------------------------------------------
    def _primary_lsn(self) -> int | None:
        try:
            with engine_for(self.primary).connect() as conn:
                return parse_lsn(conn.exec_driver_sql(PRIMARY_SQL).scalar())
        except Exception as error:  # primary down: judge from the standby alone
            log.debug("primary WAL position unknown: %s", _first_line(error))
            return None

    def _watch(self, node: NodeState) -> None:
        clock = LagClock(max(60.0, 3 * self.max_lag_s))
        conn: psycopg2.extensions.connection | None = None
        while True:
            conn = self.check(node, clock, conn)
            node.first_check.set()
            if self._stop.wait(self.interval_s):
                if conn is not None:
                    conn.close()
                return

    def check(self, node: NodeState, clock: LagClock | None,
              conn: psycopg2.extensions.connection | None = None
              ) -> psycopg2.extensions.connection | None:
        """Check a standby once and record what was found.

        Parameters
        ----------
        node
            The standby.
        clock
            The primary's WAL positions seen so far (updated here); None for a
            one-off check, which judges the lag by the standby's own
            replay timestamp.
        conn
            The connection of the previous check, reused when still open.

        Returns
        -------
        psycopg2.extensions.connection or None
            The connection, for the next check; None after a failure.
        """
        started = time.monotonic()
        primary = self._primary_lsn()
        if primary is not None and clock is not None:
            clock.see(started, primary)
        try:
            if conn is None or conn.closed:
                conn = psycopg2.connect(
                    node.dsn, connect_timeout=CONNECT_TIMEOUT_S,
                    application_name="vo-archive-check",
                    options=f"-c statement_timeout={CONNECT_TIMEOUT_S * 1000}")
                conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(CHECK_SQL)
                row = cur.fetchone()
        except psycopg2.Error as error:
            if conn is not None:
                conn.close()
            with self._lock:
                node.healthy, node.lag_s = False, None
                node.note = f"not answering: {_first_line(error)}"
            return None
        if row is None:
            raise AssertionError("a check query returned no row")
        in_recovery, replay_text, receive_text, replay_age = row
        replayed, received = parse_lsn(replay_text), parse_lsn(receive_text)
        lag: float | None
        if not in_recovery:
            healthy, lag, note = False, None, "not a standby (promoted?)"
        else:
            if replayed is not None and primary is not None:
                if replayed >= primary:
                    lag = 0.0
                elif clock is not None:
                    lag = clock.behind(replayed, time.monotonic())
                else:  # one look: the age of the last transaction replayed
                    lag = float(replay_age) if replay_age is not None else None
            elif received is not None and received == replayed:
                lag = 0.0  # the primary is out of reach: the standby's own view
            else:
                lag = float(replay_age) if replay_age is not None else None
            healthy = lag is not None and lag <= self.max_lag_s
            note = ("ok" if healthy else
                    f"behind by more than {self.max_lag_s:g} s" if lag is not None
                    else "lag unknown (nothing replayed yet)")
        with self._lock:
            node.healthy, node.lag_s, node.note = healthy, lag, note
            node.checked_at = started
        return conn

    def statuses(self) -> list[NodeStatus]:
        """Return the primary's and each standby's state, as last checked."""
        out = [_primary_status(self.primary)]
        for node in self.nodes:
            with self._lock:
                out.append(NodeStatus("standby", display_dsn(node.dsn),
                                      node.healthy, node.lag_s, node.note))
        return out


def _primary_status(dsn: str) -> NodeStatus:
    try:
        with engine_for(dsn).connect() as conn:
            recovery = conn.exec_driver_sql("SELECT pg_is_in_recovery()").scalar()
    except Exception as error:  # reported, not raised: this is a status
        return NodeStatus("primary", display_dsn(dsn), False, None,
                          f"not answering: {_first_line(error)}")
    if recovery:
        return NodeStatus("primary", display_dsn(dsn), False, None,
                          "in recovery: this server is a standby, not a primary")
    return NodeStatus("primary", display_dsn(dsn), True, 0.0, "ok")


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


_processes: dict[tuple[object, ...], ReadNodes] = {}
_registry_lock = threading.Lock()


def read_nodes(settings: Settings) -> ReadNodes:
    """Return this process's read nodes for ``settings`` (made on first use).

    Processes that fork (gunicorn workers) each make their own, with their own
    checking threads.
    """
    primary = primary_dsn(settings)
    key = (primary, settings.read_dsns, settings.max_standby_lag,
           settings.standby_check_interval, os.getpid())
    found = _processes.get(key)
    if found is not None:
        return found
    with _registry_lock:
        found = _processes.get(key)
        if found is None:
            found = ReadNodes(primary, settings.read_dsns, settings.max_standby_lag,
                              settings.standby_check_interval)
            _processes[key] = found
        return found


def check_nodes(settings: Settings) -> list[NodeStatus]:
    """Check the primary and every standby once; return what was found."""
    nodes = ReadNodes(primary_dsn(settings), settings.read_dsns,
                      settings.max_standby_lag, settings.standby_check_interval,
                      watch=False)
    for node in nodes.nodes:
        conn = nodes.check(node, None)
        if conn is not None:
            with contextlib.suppress(psycopg2.Error):
                conn.close()
    return nodes.statuses()
