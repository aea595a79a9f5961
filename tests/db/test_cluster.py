"""The embedded PostgreSQL cluster: creation, restart, loopback only."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from vo_archive.db.cluster import ClusterError, EmbeddedCluster


@pytest.fixture()
def cluster_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="vo-archive-cluster-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _non_loopback_address() -> str | None:
    """An address of this machine outside 127.0.0.0/8, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            # no packet is sent: connect() on UDP only picks a source address
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def test_cluster_starts_survives_restart_and_stays_private(cluster_dir: Path) -> None:
    c = EmbeddedCluster(cluster_dir / "pgdata")
    c.init()
    try:
        assert c.status()["running"] is True
        conn = psycopg2.connect(c.dsn())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE keep (x int)")
            cur.execute("INSERT INTO keep VALUES (42)")
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone()[0] == "127.0.0.1"
        conn.close()
        assert c.stop() is True
        assert c.status()["running"] is False
        c.start()
        conn = psycopg2.connect(c.dsn())
        with conn.cursor() as cur:
            cur.execute("SELECT x FROM keep")
            assert cur.fetchone() == (42,)
        conn.close()
        # a wrong password is refused
        bad = c.dsn().replace(c.info.password, "wrong")
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(bad, connect_timeout=5)
        addr = _non_loopback_address()
        if addr is not None:
            with socket.socket() as s:
                s.settimeout(3)
                assert s.connect_ex((addr, c.info.port)) != 0
        # nothing listens on the wildcard address either: only 127.0.0.1
        with socket.socket() as s:
            s.settimeout(3)
            assert s.connect_ex(("127.0.0.2", c.info.port)) != 0
    finally:
        c.stop("immediate")


def test_init_refuses_a_foreign_folder(cluster_dir: Path) -> None:
    (cluster_dir / "pgdata").mkdir()
    (cluster_dir / "pgdata" / "something").write_text("not ours")
    with pytest.raises(ClusterError, match="not an archive cluster"):
        EmbeddedCluster(cluster_dir / "pgdata").init()
