"""Real PostgreSQL clusters on loopback for the replication tests.

Three clusters stand for the sites: ``qub`` (Marshall master, AUX slave),
``ia2`` (AUX master, Marshall backup) and ``spare`` (the replacement master of
the restore test).  Each test gets fresh databases on them.  The replicator
runs as a subprocess (``python -m replication run``) so that it can be killed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest

from replication.config import ReplicationConfig, StreamConfig, load_config
from replication.verify import verify_stream, wait_caught_up
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.cluster import EmbeddedCluster
from vo_archive.db.engine import get_engine

ROOT = Path(__file__).resolve().parents[2]
MARSHALL_SQL = ROOT / "schema" / "marshall" / "001_marshall.sql"
MARSHALL_TABLES = ["marshall.transients", "marshall.classifications",
                   "marshall.priorities", "marshall.comments", "marshall.atel_refs"]
# The archive's AUX tables (schema/versions/0001_core.py), in foreign-key order.
AUX_TABLES = ["archive_meta.setting", "archive.run", "archive.target",
              "archive.target_alias", "archive.product", "archive.version",
              "archive.provenance"]
AUX_DEMO_FILES = 48
_counter = itertools.count()
# Operator commands go through the archive's CLI (``vo-archive replicate``).
# The replicator process, restarted dozens of times by the fault tests, and the
# per-test ``init`` run the same code as ``python -m replication``: it starts in
# 0.2 s where the archive CLI, importing the ingest stack, takes 2 s of CPU.
CLI = [sys.executable, "-m", "vo_archive", "replicate"]
FAST_CLI = [sys.executable, "-m", "replication"]


def execute(dsn: str, statement: str, params: tuple | None = None) -> None:
    """Run one statement in autocommit."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params if params is not None else ())
    finally:
        conn.close()


def query(dsn: str, statement: str, params: tuple | None = None) -> list[tuple]:
    """Return all rows of a query."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    finally:
        conn.close()


def with_db(dsn: str, dbname: str) -> str:
    """Return ``dsn`` with another database name."""
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{dbname}"


def with_port(dsn: str, port: int) -> str:
    """Return ``dsn`` pointing at another port on 127.0.0.1."""
    head, _, tail = dsn.rpartition("@127.0.0.1:")
    return f"{head}@127.0.0.1:{port}/{tail.split('/', 1)[1]}"


# Transaction-id epochs of the sites (anchors T12): every test runs on txids
# beyond 2**32, so a 32-bit truncation anywhere would misplace events against
# the tick and copy snapshots.  The spare's epoch is the lowest: a master
# restored onto it has lower txids than the slave has seen (anchors P11).
EPOCHS = {"qub": 5, "ia2": 3, "spare": 2}


def raise_epoch(cluster: EmbeddedCluster, epoch: int) -> None:
    """Set the txid epoch of a cluster (``pg_resetwal -e`` while it is stopped).

    Also turn ``fsync`` off: the faults injected here kill processes and
    servers, never the machine, so what reached the kernel survives them
    either way (``synchronous_commit`` stays on: a commit is acknowledged only
    once its WAL is written), and the suite shares a small CI machine.
    """
    cluster.stop("fast")
    cluster._run([str(cluster.bindir / "pg_resetwal"), "-e", str(epoch),
                  str(cluster.pgdata)])
    with open(cluster.pgdata / "postgresql.conf", "a") as fh:
        fh.write("fsync = off\nfull_page_writes = off\n")
    cluster.start()


@pytest.fixture(scope="session")
def sites() -> Iterator[dict[str, EmbeddedCluster]]:
    """Start the three clusters, with raised txid epochs, once per test run."""
    top = Path(tempfile.mkdtemp(prefix="repl-tests-"))
    top.chmod(0o755)
    clusters = {name: EmbeddedCluster(top / name) for name in ("qub", "ia2", "spare")}
    for name, c in clusters.items():
        c.init()
        raise_epoch(c, EPOCHS[name])
    yield clusters
    for c in clusters.values():
        with contextlib.suppress(Exception):
            c.stop("immediate")
    shutil.rmtree(top, ignore_errors=True)


def new_database(cluster: EmbeddedCluster, prefix: str) -> str:
    """Create an empty database on ``cluster``; return its DSN."""
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    execute(cluster.dsn("postgres"), f'CREATE DATABASE "{name}"')
    return cluster.dsn(name)


def archive_database(cluster: EmbeddedCluster, prefix: str, home: Path) -> Settings:
    """Create a database on ``cluster`` with the archive's schema (its migrations)."""
    settings = Settings(home=home, dsn=new_database(cluster, prefix), ingest_batch=8)
    engine = get_engine(settings)
    migrate.upgrade(engine)
    engine.dispose()
    return settings


@pytest.fixture(scope="session")
def demo_fits(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A small demo data set (FITS files), written once per run."""
    from vo_archive.demo import generate

    return generate(tmp_path_factory.mktemp("repl-demo"), AUX_DEMO_FILES, seed=6,
                    workers=1)


TEST_SETTINGS = """
[defaults]
io_timeout = 3.0
connect_timeout = 3
backoff_min = 0.1
backoff_max = 1.0
poll_interval = 0.05
ticker_max_lag = 0.1
ticker_max_count = 2000
fetch_size = 1000
maint_interval = 1.0
journal = true
"""


@dataclass
class Replicator:
    """A replicator subprocess over a config file."""

    config: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    command: list[str] = field(default_factory=lambda: list(FAST_CLI))

    def start(self, **env: str) -> None:
        """Start ``replicate run`` (fault env vars in ``env``)."""
        assert self.proc is None or self.proc.poll() is not None
        full = dict(os.environ, PYTHONPATH=str(ROOT), **self.env, **env)
        for key in ("REPL_FAULT", "REPL_FAULT_STREAM"):
            if key not in env and key not in self.env:
                full.pop(key, None)
        self.starts += 1
        with open(self.log, "ab") as fh:
            fh.write(f"--- start {self.starts} {env}\n".encode())
            self.proc = subprocess.Popen(
                [*self.command, "--config", str(self.config), "run"],
                stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=full)

    def wait_exit(self, timeout: float = 120.0) -> int:
        """Wait for the process to end by itself (a fault hook); return its code."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the replicator."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def text(self) -> str:
        """The log so far."""
        return self.log.read_text(errors="replace")


@dataclass
class Env:
    """One test's databases, configuration and replicator."""

    config: ReplicationConfig
    path: Path
    replicator: Replicator
    dsns: dict[str, str]
    settings: Settings | None = None

    def stream(self, name: str = "marshall") -> StreamConfig:
        """The named stream's configuration."""
        return self.config.stream(name)

    def assert_identical(self, name: str = "marshall", timeout: float = 180.0) -> None:
        """Wait for the slave to pass a forced tick; require identical tables (I1)."""
        cfg = self.stream(name)
        reports = verify_stream(cfg, wait=True, timeout=timeout)
        bad = [r for r in reports if not r.identical]
        assert not bad, "tables differ: " + "; ".join(
            f"{r.table}: {r.master_rows} vs {r.slave_rows} rows, only master "
            f"{r.only_master[:5]}, only slave {r.only_slave[:5]}, differ "
            f"{r.different[:5]}"
            for r in bad
        )
        assert_journal_unique(cfg)

    def catch_up(self, name: str = "marshall", timeout: float = 180.0) -> None:
        """Wait until the slave has applied past a forced tick."""
        cfg = self.stream(name)
        m = psycopg2.connect(cfg.master)
        s = psycopg2.connect(cfg.slave)
        try:
            wait_caught_up(m, s, cfg, timeout)
        finally:
            m.close()
            s.close()


def assert_journal_unique(cfg: StreamConfig) -> None:
    """I2: every applied event id appears once, and matches the applied count."""
    rows = query(
        cfg.slave,
        "SELECT count(*), count(DISTINCT ev_id), "
        "(SELECT events_applied FROM replication.stream_state WHERE stream = %s) "
        "FROM replication.journal WHERE stream = %s AND generation = "
        "(SELECT generation FROM replication.stream_state WHERE stream = %s)",
        (cfg.name, cfg.name, cfg.name),
    )
    total, distinct, applied = rows[0]
    assert total == distinct
    assert applied is None or total == applied


def write_config(path: Path, streams: list[dict[str, object]], extra: str = "") -> None:
    """Write a replication TOML with the test settings."""
    lines = [TEST_SETTINGS, extra]
    for s in streams:
        lines.append("[[stream]]")
        for k, v in s.items():
            if isinstance(v, list):
                lines.append(f"{k} = [{', '.join(repr(x) for x in v)}]")
            else:
                lines.append(f"{k} = {v!r}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def marshall_env(sites: dict[str, EmbeddedCluster], tmp_path: Path,
                 request: pytest.FixtureRequest) -> Iterator[Env]:
    """Marshall stream QUB → IA2 (initialised, replicator not started)."""
    master = new_database(sites["qub"], "marshall")
    slave = new_database(sites["ia2"], "marshall_bk")
    for dsn in (master, slave):
        execute(dsn, MARSHALL_SQL.read_text().replace("%", "%%"))
    path = tmp_path / "replication.toml"
    write_config(path, [{"name": "marshall", "origin": "qub", "master": master,
                         "slave": slave, "tables": MARSHALL_TABLES}])
    env = Env(load_config(path), path, Replicator(path, tmp_path / "replicator.log"),
              {"master": master, "slave": slave})
    init(path)
    yield env
    env.replicator.kill()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(env.replicator.text()[-20000:])


@pytest.fixture
def aux_env(sites: dict[str, EmbeddedCluster], tmp_path: Path,
            request: pytest.FixtureRequest) -> Iterator[Env]:
    """AUX stream IA2 archive → QUB copy, both migrated (replicator not started).

    ``env.settings`` holds the master archive's settings, for ingests.
    """
    master = archive_database(sites["ia2"], "aux", tmp_path / "ia2-home")
    slave = archive_database(sites["qub"], "aux_copy", tmp_path / "qub-home")
    path = tmp_path / "replication.toml"
    write_config(path, [{"name": "aux", "origin": "ia2", "master": master.dsn,
                         "slave": slave.dsn, "tables": AUX_TABLES}])
    env = Env(load_config(path), path, Replicator(path, tmp_path / "replicator.log"),
              {"master": str(master.dsn), "slave": str(slave.dsn)})
    env.settings = master
    yield env
    env.replicator.kill()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(env.replicator.text()[-20000:])


def init(path: Path, *extra: str, check: bool = True,
         cli: list[str] = FAST_CLI) -> subprocess.CompletedProcess[str]:
    """Run ``replicate init`` (as the operator would); fail with its stderr."""
    out = subprocess.run([*cli, "--config", str(path), "init", *extra],
                         check=False, cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if check and out.returncode != 0:
        raise AssertionError(f"replicate init failed: {out.stderr.strip()}")
    return out


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    """Remember each phase's outcome so fixtures can attach the replicator log."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def insert_transients(dsn: str, start: int, n: int, prefix: str = "SN") -> None:
    """Insert ``n`` transients with names ``prefix start..start+n-1``."""
    execute(
        dsn,
        "INSERT INTO marshall.transients (name, ra_deg, dec_deg, discovery_mag) "
        "SELECT %s || ' ' || g, (g * 7.3) %% 360, ((g * 3.1) %% 180) - 90, "
        "15 + (g %% 70) / 10.0 FROM generate_series(%s, %s) g",
        (prefix, start, start + n - 1),
    )


def wait_for(
    predicate: object, timeout: float = 120.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until true; fail (not flake) only after a long deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
