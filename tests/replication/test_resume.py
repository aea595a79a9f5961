"""A stream fixed by the operator resumes at once, not after its backoff (#17).

The stream's backoff here is ten minutes, far beyond the test's waits: the
stream catches up only because ``replicate resume`` (or ``replicate status``
of the halted stream) wakes the replicator.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from replication.config import load_config
from replication.status import stream_status
from tests.replication.conftest import (
    CLI,
    MARSHALL_SQL,
    MARSHALL_TABLES,
    ROOT,
    Env,
    Replicator,
    execute,
    init,
    insert_transients,
    new_database,
    query,
    wait_for,
    write_config,
)
from vo_archive.db.cluster import EmbeddedCluster


def operator(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``vo-archive replicate`` as the operator does."""
    return subprocess.run([*CLI, "--config", str(path), *args], check=False, cwd=ROOT,
                          capture_output=True, text=True, env={
                              "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_resume_and_status_wake_a_fixed_stream(sites: dict[str, EmbeddedCluster],
                                               tmp_path: Path) -> None:
    master = new_database(sites["qub"], "marshall")
    slave = new_database(sites["ia2"], "marshall_bk")
    for dsn in (master, slave):
        execute(dsn, MARSHALL_SQL.read_text().replace("%", "%%"))
    path = tmp_path / "replication.toml"
    write_config(path, [{"name": "marshall", "origin": "qub", "master": master,
                         "slave": slave, "tables": MARSHALL_TABLES,
                         "backoff_min": 600.0, "backoff_max": 600.0}])
    env = Env(load_config(path), path, Replicator(path, tmp_path / "replicator.log"),
              {"master": master, "slave": slave})
    init(path)
    insert_transients(master, 1, 3)
    env.replicator.start()
    try:
        env.catch_up()

        def halt_on(body: str) -> None:
            execute(slave, "ALTER TABLE marshall.comments ADD CONSTRAINT no_poison "
                           "CHECK (body <> %s)", (body,))
            execute(master, "INSERT INTO marshall.comments (transient_id, author, "
                            "body) VALUES (1, 'a', %s)", (body,))
            wait_for(lambda: "no_poison" in (stream_status(env.stream()).last_error
                                             or ""), what="the halt")
            # The replicator now waits out its backoff (ten minutes); the fix:
            execute(slave, "ALTER TABLE marshall.comments DROP CONSTRAINT no_poison")

        halt_on("poison 1")
        out = operator(path, "resume")
        assert (out.returncode, out.stdout) == (0, "marshall: resume requested "
                                                   "(see `status`)\n")
        env.catch_up(timeout=120)  # a tenth of the backoff
        assert stream_status(env.stream()).last_error is None

        halt_on("poison 2")
        out = operator(path, "status")
        assert out.returncode == 1 and "no_poison" in out.stdout
        env.catch_up(timeout=120)
        assert operator(path, "status").returncode == 0
        assert query(slave, "SELECT body FROM marshall.comments ORDER BY 1") == [
            ("poison 1",), ("poison 2",)]
        assert env.replicator.text().count("resume requested; retrying now") == 2
        env.assert_identical()
    finally:
        env.replicator.stop()
