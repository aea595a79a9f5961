"""The operator's guide, followed literally (issue 17).

``replication/README.md`` has a shell block setting up the AUX stream between
two embedded clusters with a least-privileged replicator role.  This test
runs that block as it stands (so a change to the README that breaks the
procedure breaks the test), then writes on the master through the real ingest
and a negative-zero declination, and checks what arrived on the copy.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

from tests.replication.conftest import ROOT, query, wait_for
from vo_archive.db.cluster import find_pg_bindir

README = ROOT / "replication" / "README.md"
MARKER = "<!-- tests/replication/test_readme.py runs the next block as it stands -->"


def readme_block() -> str:
    """Return the README's setup block (the ``sh`` block after the marker)."""
    text = README.read_text()
    start = text.index(MARKER) + len(MARKER)
    head = "\n```sh\n"
    assert text[start:start + len(head)] == head, "the marker must precede ```sh"
    body = start + len(head)
    return text[body:text.index("\n```\n", body) + 1]


def dsn_of(home: Path, user: str, password: str) -> str:
    """DSN of a site's embedded cluster for ``user`` (port from its cluster file)."""
    info = json.loads((home / "pgdata.cluster.json").read_text())
    return f"postgresql://{user}:{password}@127.0.0.1:{info['port']}/pessto"


def test_readme_setup_steps(demo_fits: list[Path]) -> None:
    # Outside pytest's 0700 folders: the clusters' service user walks into it.
    tmp_path = Path(tempfile.mkdtemp(prefix="repl-readme-"))
    tmp_path.chmod(0o755)
    work = tmp_path / "ops"
    work.mkdir()
    bindir = str(Path(sys.executable).parent)
    env = dict(
        os.environ,
        IA2_HOME=str(tmp_path / "ia2"),
        QUB_HOME=str(tmp_path / "qub"),
        REPL_PASSWORD="Repl-pw_17",  # noqa: S106 (a throw-away test cluster)
        PATH=f"{bindir}:{find_pg_bindir()}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        PYTHONPATH=str(ROOT),
    )
    env.pop("VO_ARCHIVE_DSN", None)
    env.pop("VO_ARCHIVE_HOME", None)
    homes = [tmp_path / "ia2", tmp_path / "qub"]
    try:
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block()],
                             cwd=work, env=env, capture_output=True, text=True,
                             timeout=600, check=False)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        lines = out.stdout.splitlines()
        verified = [ln for ln in lines if ln.startswith("aux ")]
        assert len(verified) == 7 and all("identical" in ln for ln in verified), lines
        assert (work / "replicator.pid").exists()

        master = dsn_of(homes[0], "vo_archive", _password(homes[0]))
        slave = dsn_of(homes[1], "vo_archive", _password(homes[1]))
        # The replicator works as the least-privileged role on both sides.
        for dsn in (master, slave):
            assert query(dsn, "SELECT rolsuper FROM pg_roles WHERE rolname = "
                              "'replicator'") == [(False,)]
        session = ("SELECT usename FROM pg_stat_activity WHERE application_name = "
                   "'vo-archive-replicator:aux'")
        wait_for(lambda: query(slave, session) == [("replicator",)],
                 what="the replicator's slave session")
        # The role writes the replicated tables only under the replica role.
        role_slave = dsn_of(homes[1], "replicator", env["REPL_PASSWORD"])
        conn = psycopg2.connect(role_slave)
        with conn.cursor() as cur:
            try:
                cur.execute("INSERT INTO archive_meta.setting VALUES ('x', 'y')")
                raise AssertionError("a local write to the copy went through")
            except psycopg2.Error as exc:
                assert "replica" in str(exc)
        conn.close()

        # Changes: the real ingest on the master, and a declination of -0.0.
        ingest = subprocess.run(
            ["vo-archive", "ingest", "--quiet", *map(str, demo_fits[:6])], cwd=work,
            env=dict(env, VO_ARCHIVE_HOME=env["IA2_HOME"]), capture_output=True,
            text=True, timeout=300, check=False)
        assert ingest.returncode == 0, ingest.stderr[-2000:]
        conn = psycopg2.connect(master)
        with conn.cursor() as cur:
            cur.execute("UPDATE archive.version SET dec = '-0' WHERE version_id = "
                        "(SELECT min(version_id) FROM archive.version)")
        conn.commit()
        conn.close()
        verify = subprocess.run(["vo-archive", "replicate", "--config",
                                 "replication.toml", "verify"], cwd=work, env=env,
                                capture_output=True, text=True, timeout=300,
                                check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        counts = re.search(r"^aux archive\.version: identical \(master (\d+) rows, "
                           r"slave (\d+) rows\)$", verify.stdout, re.MULTILINE)
        assert counts and int(counts[1]) == int(counts[2]) >= 6, verify.stdout
        ((dec,),) = query(slave, "SELECT dec FROM archive.version ORDER BY version_id "
                                 "LIMIT 1")
        assert dec == 0 and math.copysign(1.0, dec) == -1.0
    finally:
        pid_file = work / "replicator.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    os.kill(pid, 0)  # ProcessLookupError once it is gone
                    time.sleep(0.2)
        for home in homes:
            subprocess.run(["vo-archive", "db", "stop"], env=dict(
                env, VO_ARCHIVE_HOME=str(home)), capture_output=True, check=False,
                timeout=120)
        shutil.rmtree(tmp_path, ignore_errors=True)


def _password(home: Path) -> str:
    return str(json.loads((home / "pgdata.cluster.json").read_text())["password"])
