"""Test fixtures: a real PostgreSQL cluster, archives in fresh databases, live servers.

The cluster is started once per test run on a free loopback port (the same
embedded-cluster code the archive uses) and stopped at the end. Each archive
fixture gets its own database and storage folder, so tests that write do not
disturb others. Nothing here mocks PostgreSQL or HTTP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import requests
from sqlalchemy import Engine

from bench.common import stop_serve as stop_server
from tests.s3server import SeaweedS3, start_seaweed
from vo_archive.config import Settings, StorageConfig
from vo_archive.db import migrate
from vo_archive.db.cluster import EmbeddedCluster, free_port
from vo_archive.db.engine import get_engine
from vo_archive.ingest.pipeline import Ingestor
from vo_archive.vo.positional import database_covers

DEMO_PRODUCTS = int(os.environ.get("VO_ARCHIVE_TEST_DEMO", "400"))


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A PostgreSQL cluster for the whole test run."""
    # pytest's own temporary folders are private (0700); the server may run as
    # another user (postgres, when the tests run as root), so use a folder it can
    # reach.
    root = Path(tempfile.mkdtemp(prefix="vo-archive-test-pg-"))
    root.chmod(0o755)
    cluster = EmbeddedCluster(root / "pgdata")
    cluster.init()
    # the run keeps a dozen archives served at once (gunicorn workers and job
    # workers, each with its pool): more than the archive's default 200
    with open(root / "pgdata" / "postgresql.conf", "a") as fh:
        fh.write("max_connections = 600\n")
    cluster.stop()
    cluster.start()
    yield cluster
    cluster.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


def create_database(cluster: EmbeddedCluster, name: str) -> str:
    """Create an empty database in the test cluster; return its DSN."""
    conn = psycopg2.connect(cluster.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return cluster.dsn(name)


@dataclass
class Archive:
    """An archive in its own database and home folder."""

    settings: Settings
    engine: Engine

    def ingest(self, paths: list[Path] | list[str], **kw: object) -> object:
        """Ingest paths in-process; return the summary."""
        with Ingestor(self.settings, self.engine, workers=1, **kw) as ing:  # type: ignore[arg-type]
            return ing.ingest_paths(paths)


@pytest.fixture(scope="session")
def make_archive(pg_cluster: EmbeddedCluster, tmp_path_factory: pytest.TempPathFactory
                 ) -> Callable[..., Archive]:
    """Factory of empty, migrated archives (each with its own database)."""

    def make(**overrides: object) -> Archive:
        name = "a_" + uuid.uuid4().hex[:10]
        dsn = create_database(pg_cluster, name)
        home = tmp_path_factory.mktemp(name)
        settings = Settings(home=home, dsn=dsn, **overrides)  # type: ignore[arg-type]
        engine = get_engine(settings)
        migrate.upgrade(engine, settings.publisher_authority)
        return Archive(settings, engine)

    return make


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """A real S3 store (SeaweedFS) on loopback for the run; its credentials in env."""
    server = start_seaweed()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in server.env.items():
            mp.setenv(name, value)
        yield server
    server.stop()


@pytest.fixture(scope="session")
def make_s3_archive(make_archive: Callable[..., Archive], s3_server: SeaweedS3
                    ) -> Callable[..., Archive]:
    """Factory of empty archives keeping their files in a fresh S3 bucket each.

    Subprocesses (``vo-archive ...``) of such an archive need
    ``s3_server.archive_env(archive.settings.storage.bucket)`` in their
    environment.
    """

    def make(**overrides: object) -> Archive:
        cfg = StorageConfig("s3", s3_server.endpoint, s3_server.new_bucket())
        return make_archive(storage=cfg, **overrides)

    return make


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A demo data set written once per run."""
    from vo_archive.demo import generate

    out = tmp_path_factory.mktemp("demo")
    return generate(out, DEMO_PRODUCTS, seed=2012)


@pytest.fixture(scope="session")
def demo_archive(
    make_archive: Callable[..., Archive], demo_files: list[Path]
) -> Archive:
    """An archive holding the demo data set; tests must not change it."""
    archive = make_archive()
    archive.ingest([demo_files[0].parent])
    return archive


@dataclass
class LiveServer:
    """A running ``vo-archive serve`` on loopback."""

    url: str
    process: subprocess.Popen[bytes]
    archive: Archive

    def get(self, path: str, **kw: object) -> requests.Response:
        """GET a path on the server."""
        return requests.get(self.url + path, timeout=60, **kw)  # type: ignore[arg-type]


def start_server(
    archive: Archive, extra_env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> LiveServer:
    """Start the archive's production server (gunicorn) on a free port."""
    port = free_port()
    env = dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
               VO_ARCHIVE_DSN=archive.settings.dsn or "", **(extra_env or {}))
    log = open(archive.settings.home / f"server-{port}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vo_archive", "serve", "--port", str(port),
         "--workers", "2", *extra_args],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                "server exited: "
                f"{(archive.settings.home / f'server-{port}.log').read_text()}"
            )
        try:
            requests.get(url + "/", timeout=2)
            return LiveServer(url, proc, archive)
        except requests.ConnectionError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError("server did not start in 60 s")


@pytest.fixture(scope="session")
def live_server(demo_archive: Archive) -> Iterator[LiveServer]:
    """The demo archive served by gunicorn on loopback."""
    server = start_server(demo_archive)
    yield server
    stop_server(server.process)


def cone_extension_or_skip(archive: Archive) -> None:
    """Skip unless the archive's database has the vo_archive_cone extension.

    Where CI requires it (``VO_ARCHIVE_REQUIRE_CONE_EXTENSION=1``), fail instead.
    """
    with archive.engine.connect() as conn:
        have = database_covers(lambda sql: conn.exec_driver_sql(sql).scalar_one())
    if not have:
        if os.environ.get("VO_ARCHIVE_REQUIRE_CONE_EXTENSION") == "1":
            pytest.fail("the vo_archive_cone extension is not in the database")
        pytest.skip("the vo_archive_cone extension is not installed")
