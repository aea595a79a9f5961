"""A primary with streaming hot standbys on loopback, for tests and benchmarks.

The primary is an embedded cluster in ``HOME/pgdata`` (so the archive's own
settings for ``HOME`` find it), the standbys are made from it with
``pg_basebackup`` by :meth:`vo_archive.db.cluster.EmbeddedCluster.make_standby`
(the code behind ``vo-archive db standby add``). pg_stat_statements is loaded
on every node, so a test can see which node ran which statement.

Use::

    rc = start_replicated(home, standbys=2)
    settings = rc.settings(max_standby_lag=2.0)   # reads on the standbys
    ...
    rc.stop()
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from vo_archive.config import Settings
from vo_archive.db.cluster import EmbeddedCluster
from vo_archive.db.readers import parse_lsn

#: postgresql.conf lines of the primary (copied to the standbys).
PRIMARY_CONF = (
    "shared_buffers = 64MB\n"
    "max_connections = 300\n"
    "shared_preload_libraries = 'pg_stat_statements'\n"
    "pg_stat_statements.track = all\n"
    "pg_stat_statements.track_utility = on\n"
)


@dataclass
class ReplicatedCluster:
    """A running primary and its standbys."""

    home: Path
    primary: EmbeddedCluster
    standbys: list[EmbeddedCluster] = field(default_factory=list)

    @property
    def dbname(self) -> str:
        """The archive's database."""
        return self.primary.info.dbname

    def standby_dsns(self) -> tuple[str, ...]:
        """Return the standbys' DSNs of the archive's database."""
        return tuple(s.dsn() for s in self.standbys)

    def settings(self, **changes: Any) -> Settings:
        """Return archive settings reading on the standbys (the embedded primary)."""
        base = Settings(home=self.home, read_dsns=self.standby_dsns(),
                        max_standby_lag=2.0, standby_check_interval=0.2)
        return dataclasses.replace(base, **changes)

    def env(self, settings: Settings) -> dict[str, str]:
        """Return the environment (beside ``VO_ARCHIVE_HOME``) giving ``settings``."""
        (self.home / "archive.toml").write_text(
            f"[archive]\nstandby_check_interval = {settings.standby_check_interval}\n")
        return {"VO_ARCHIVE_READ_DSNS": " ".join(settings.read_dsns),
                "VO_ARCHIVE_MAX_STANDBY_LAG": str(settings.max_standby_lag)}

    def nodes(self) -> list[EmbeddedCluster]:
        """Return the primary, then the standbys."""
        return [self.primary, *self.standbys]

    def execute(self, node: EmbeddedCluster, sql: str,
                args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on a node's archive database; return its rows."""
        conn = psycopg2.connect(node.dsn(), connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Wait until every running standby has replayed the primary's WAL."""
        target = parse_lsn(self.execute(
            self.primary, "SELECT pg_current_wal_lsn()::text")[0][0])
        assert target is not None
        deadline = time.monotonic() + timeout
        for standby in self.standbys:
            while True:
                done = parse_lsn(self.execute(
                    standby, "SELECT pg_last_wal_replay_lsn()::text")[0][0])
                if done is not None and done >= target:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{standby.pgdata} did not catch up")
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop every node."""
        for node in (*self.standbys, self.primary):
            node.stop("immediate")


def start_replicated(home: Path, standbys: int = 2) -> ReplicatedCluster:
    """Create and start a primary in ``home/pgdata`` and ``standbys`` standbys.

    ``home`` must be reachable by the server's user (0755 when run as root).
    """
    primary = EmbeddedCluster(home / "pgdata")
    primary.init()
    with open(primary.pgdata / "postgresql.conf", "a") as fh:
        fh.write(PRIMARY_CONF)
    primary.stop()
    primary.start()
    rc = ReplicatedCluster(home, primary)
    for i in range(1, standbys + 1):
        rc.standbys.append(primary.make_standby(home / f"standby-{i}"))
    return rc
