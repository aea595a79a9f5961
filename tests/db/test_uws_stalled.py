"""A job survives the loss of its worker (#14, #18): killed workers' jobs run again.

A worker process killed hard (SIGKILL, as the kernel's out-of-memory killer
does) leaves its running jobs behind. Real ``vo-archive worker`` processes,
with the stalled bound set to a few seconds, show that the next worker queues
them again once the dead one's heartbeat is old: a TAP job that always runs
long starts again (EXECUTING, with a new start time, the lost query cancelled)
and, after its third lost worker, ends in ERROR saying so; a job aborted
meanwhile stays ABORTED and is not run again; an arrival classification whose
worker died mid-batch (the batch's extra tasks claimed in its transaction) is
classified after the restart, and so are the claimed ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.classify_fixtures import phase3_spectra, write_template_product
from tests.conftest import Archive, stop_server
from vo_archive.access import ANONYMOUS
from vo_archive.vo.uws.jobs import create_job, get_job, set_phase
from vo_archive.vo.uws.phases import Phase
from vo_archive.vo.uws.worker import enqueue

pytestmark = pytest.mark.slow

#: Seconds without a heartbeat after which a worker counts as lost (tests only).
STALLED_AFTER = 3
#: Runs for minutes: TAP_SCHEMA.columns has hundreds of rows.
LONG = [("LANG", "ADQL"), ("QUERY", "SELECT COUNT(*) FROM TAP_SCHEMA.columns AS a, "
                                    "TAP_SCHEMA.columns AS b, TAP_SCHEMA.columns AS c, "
                                    "TAP_SCHEMA.columns AS d")]


class Workers:
    """Starts ``vo-archive worker`` processes for an archive and kills them."""

    def __init__(self, archive: Archive, folder: Path) -> None:
        self.archive = archive
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start a worker; return once it runs."""
        path = self.folder / f"worker-{len(self.procs)}.log"
        env = dict(os.environ, VO_ARCHIVE_HOME=str(self.archive.settings.home),
                   VO_ARCHIVE_DSN=self.archive.settings.dsn or "",
                   VO_ARCHIVE_WORKER_STALLED_AFTER=str(STALLED_AFTER))
        proc = subprocess.Popen(
            [sys.executable, "-m", "vo_archive", "-v", "worker", "--processes", "1",
             *args], env=env, stdout=open(path, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while b"worker running" not in path.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, path.read_text()
            time.sleep(0.1)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill a worker's process group hard: it finishes nothing."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def log(self) -> str:
        """Return the workers' logs, one after the other."""
        return "".join(p.read_text() for p in sorted(self.folder.glob("worker-*.log")))

    def stop_all(self) -> None:
        """Stop the workers still running, and any query left behind."""
        for proc in self.procs:
            stop_server(proc)
        with self.archive.engine.begin() as conn:
            conn.execute(text("SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                              "WHERE query LIKE 'FETCH%tap_query%' AND "
                              "pid <> pg_backend_pid()"))


@pytest.fixture()
def workers(make_archive: Callable[..., Archive], tmp_path: Path) -> Iterator[Workers]:
    w = Workers(make_archive(), tmp_path)
    yield w
    w.stop_all()


def queue_job(archive: Archive, query: list[tuple[str, str]]) -> str:
    """Create and queue a TAP job as PHASE=RUN does; return its id."""
    with archive.engine.begin() as conn:
        job_id = create_job(conn, "tap", ANONYMOUS, query, {}, 600,
                            timedelta(hours=1), "http://node.example")
        job = get_job(conn, job_id)
        assert job is not None
        set_phase(conn, job, Phase.QUEUED)
        enqueue(conn, job_id)
    return job_id


def state(archive: Archive, job_id: str) -> tuple[str, datetime | None, str | None]:
    """Return a job's phase, start time and error message."""
    with archive.engine.connect() as conn:
        row = conn.execute(text("SELECT phase, start_time, error_message FROM uws.job "
                                "WHERE job_id = :id"), {"id": job_id}).one()
    return row[0], row[1], row[2]


def running_queries(archive: Archive) -> int:
    """How many backends run a TAP query now (read through a cursor: its FETCH)."""
    with archive.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
            "query LIKE 'FETCH%tap_query%' AND pid <> pg_backend_pid()")).scalar_one())


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    """Wait until ``check()`` holds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)


def test_lost_jobs_run_again_until_given_up_and_aborted_ones_never(
        workers: Workers) -> None:
    archive = workers.archive
    long_id = queue_job(archive, LONG)
    aborted_id = queue_job(archive, LONG)
    worker = workers.start("--concurrency", "2")
    wait_for("both jobs' queries run", lambda: running_queries(archive) == 2)
    starts = [state(archive, long_id)[1]]
    aborted_start = state(archive, aborted_id)[1]
    workers.kill(worker)
    # the lost worker's jobs are still EXECUTING; one is aborted meanwhile (as
    # ABORT does: its query cancelled, the phase set)
    assert state(archive, long_id)[0] == state(archive, aborted_id)[0] == "EXECUTING"
    with archive.engine.begin() as conn:
        job = get_job(conn, aborted_id, lock=True)
        assert job is not None
        conn.execute(text("SELECT pg_cancel_backend(:p)"), {"p": job.backend_pid})
        set_phase(conn, job, Phase.ABORTED)
    for lost in (1, 2):
        worker = workers.start()
        # queued again once the dead worker's heartbeat is old, and run again:
        # a new start, and only the new query runs (the lost one was cancelled)

        def runs_again() -> bool:
            phase, start, _ = state(archive, long_id)
            return (phase == "EXECUTING" and start not in starts
                    and running_queries(archive) == 1)

        wait_for(f"the job runs again after {lost} lost workers", runs_again)
        _, start, error = state(archive, long_id)
        assert start is not None and starts[-1] is not None and start > starts[-1]
        assert error is None
        starts.append(start)
        workers.kill(worker)
    worker = workers.start()
    # the third lost worker: given up, and said so
    wait_for("the job is given up", lambda: state(archive, long_id)[0] == "ERROR")
    assert state(archive, long_id)[2] == ("FatalFault: the worker running this job "
                                          "stopped 3 times")
    wait_for("the lost query is cancelled", lambda: running_queries(archive) == 0)
    # the aborted job was never run again, and nothing of either is queued
    assert state(archive, aborted_id)[:2] == ("ABORTED", aborted_start)
    with archive.engine.connect() as conn:
        left = conn.execute(text(
            "SELECT count(*) FROM procrastinate.procrastinate_jobs "
            "WHERE task_name = 'uws.run_job'")).scalar_one()
    assert left == 0
    log = workers.log()
    assert f"job {aborted_id} lost its worker but is ABORTED; not run again" in log
    assert log.count(f"(job_id='{long_id}')") >= 3, log[-3000:]


def test_arrival_classification_of_a_lost_worker_is_made_after_restart(
        workers: Workers, demo_files: list[Path], tmp_path: Path) -> None:
    archive = workers.archive
    sources = phase3_spectra(demo_files)[:5]
    assert len(sources) >= 3
    products = [write_template_product(src, tmp_path, "sn1994D", 0.0, 0.02 + 0.01 * k)
                for k, src in enumerate(sources)]
    archive.ingest(products)
    with archive.engine.connect() as conn:
        versions = set(conn.execute(text(
            "SELECT (args ->> 'version_id')::bigint FROM "
            "procrastinate.procrastinate_jobs WHERE task_name = 'classify.version'")
        ).scalars())
    assert len(versions) == len(products)
    # hold the classification table, so that the worker's batch stops at its
    # first verdict: its own task taken, the others claimed in its transaction
    with archive.engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE archive.classification IN EXCLUSIVE MODE"))
        worker = workers.start("--concurrency", "1")

        def batch_waits() -> bool:
            with archive.engine.connect() as conn:  # a fresh statistics snapshot
                return bool(conn.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                    "'Lock' AND query LIKE 'INSERT INTO archive.classification%'")
                ).scalar_one())

        wait_for("the batch waits to store a verdict", batch_waits)
        free = blocker.execute(text(
            "SELECT status FROM procrastinate.procrastinate_jobs WHERE "
            "task_name = 'classify.version' FOR UPDATE SKIP LOCKED")).scalars().all()
        assert free == ["doing"]  # one task runs, the others are claimed by it
        workers.kill(worker)
        blocker.rollback()
    with archive.engine.connect() as conn:
        def statuses() -> dict[str, int]:
            return dict(conn.execute(text(
                "SELECT status, count(*) FROM procrastinate.procrastinate_jobs "
                "WHERE task_name = 'classify.version' GROUP BY status")).all())

        # the dead worker's transaction rolled back: the claimed tasks are queued
        wait_for("the claimed tasks are back", lambda: statuses() == {
            "doing": 1, "todo": len(products) - 1})
        conn.rollback()
    workers.start()
    with archive.engine.connect() as conn:
        def classified() -> set[int]:
            conn.rollback()
            return set(conn.execute(text(
                "SELECT version_id FROM archive.classification")).scalars())

        wait_for("every arrival is classified", lambda: classified() == versions)
        left = conn.execute(text(
            "SELECT count(*) FROM procrastinate.procrastinate_jobs "
            "WHERE task_name = 'classify.version'")).scalar_one()
    assert left == 0
    assert "lost its worker; queued again (attempt 2)" in workers.log()
