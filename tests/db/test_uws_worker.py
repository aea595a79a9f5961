"""Job workers on several nodes (#18): two worker processes share one queue.

Two ``vo-archive worker`` processes (as on two hosts: they share nothing but the
database) drain a queue of TAP jobs queued at once. Each job is taken by exactly
one worker (procrastinate fetches with ``FOR UPDATE SKIP LOCKED``, and
:func:`vo_archive.vo.uws.worker.run_job` moves a job out of QUEUED under its row
lock), every job completes, and both workers take part.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Archive, stop_server
from vo_archive.access import ANONYMOUS
from vo_archive.vo.uws.jobs import create_job, get_job, set_phase
from vo_archive.vo.uws.phases import Phase
from vo_archive.vo.uws.worker import enqueue

pytestmark = pytest.mark.slow

JOBS = 24
QUERY = [("LANG", "ADQL"),
         ("QUERY", "SELECT COUNT(*) AS n FROM TAP_SCHEMA.columns")]


def _start_worker(archive: Archive, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
               VO_ARCHIVE_DSN=archive.settings.dsn or "")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vo_archive", "-v", "worker", "--concurrency", "2"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while b"worker running" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"worker did not start: {log_path.read_text()}")
        time.sleep(0.1)
    return proc


def test_two_workers_never_take_the_same_job(make_archive: Callable[..., Archive],
                                             tmp_path: Path) -> None:
    archive = make_archive()
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    workers = [_start_worker(archive, path) for path in logs]
    try:
        time.sleep(1.0)  # both LISTEN before the jobs are queued
        ids = []
        with archive.engine.begin() as conn:  # all queued in one commit
            for _ in range(JOBS):
                job_id = create_job(conn, "tap", ANONYMOUS, QUERY, {}, 60,
                                    timedelta(hours=1), "http://node.example")
                job = get_job(conn, job_id)
                assert job is not None
                set_phase(conn, job, Phase.QUEUED)
                enqueue(conn, job_id)
                ids.append(job_id)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with archive.engine.connect() as conn:
                phases = dict(conn.execute(text(
                    "SELECT phase, count(*) FROM uws.job GROUP BY phase")).all())
            if phases.get("COMPLETED", 0) + phases.get("ERROR", 0) == JOBS:
                break
            time.sleep(0.2)
        assert phases == {"COMPLETED": JOBS}, phases
    finally:
        for proc in workers:
            stop_server(proc)
    started: dict[str, list[int]] = {}
    for k, path in enumerate(logs):
        log = path.read_text()
        assert "no longer queued" not in log, log[-3000:]
        for job_id in re.findall(r"Starting job uws\.run_job\[\d+\]\(job_id='(\w+)'\)",
                                 log):
            started.setdefault(job_id, []).append(k)
    assert sorted(started) == sorted(ids), (len(started), logs[0].read_text()[-2000:])
    assert all(len(who) == 1 for who in started.values()), {
        j: w for j, w in started.items() if len(w) > 1}
    per_worker = [sum(1 for w in started.values() if w == [k]) for k in (0, 1)]
    assert min(per_worker) > 0, per_worker  # both took part
