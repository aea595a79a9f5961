"""What the recovery of lost workers' jobs does with each kind of task (#14, #18).

The queue is set up as two workers left it, one alive and one that stopped
heart-beating an hour ago, with procrastinate's own functions; then
:func:`vo_archive.vo.uws.worker.recover_stalled` runs as a worker runs it.
(``test_uws_stalled`` kills real worker processes.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from classify.jobs import classify_arrivals
from classify.storage import claim_queued
from tests.classify_fixtures import phase3_spectra, write_template_product
from tests.conftest import Archive
from vo_archive.access import ANONYMOUS
from vo_archive.vo.uws.jobs import create_job, delete_job, get_job, set_phase
from vo_archive.vo.uws.phases import Phase
from vo_archive.vo.uws.worker import (
    CLEANUP_TASK,
    QUEUE,
    RUNNERS,
    JobRun,
    enqueue,
    recover_stalled,
    run_job,
)

QUERY = [("LANG", "ADQL"), ("QUERY", "SELECT TOP 1 * FROM TAP_SCHEMA.tables")]


def _uws_job(conn: Connection, phase: Phase) -> str:
    job_id = create_job(conn, "tap", ANONYMOUS, QUERY, {}, 600, timedelta(hours=1),
                        "http://node.example")
    job = get_job(conn, job_id)
    assert job is not None
    set_phase(conn, job, Phase.QUEUED)
    enqueue(conn, job_id)
    if phase is Phase.EXECUTING:
        job = get_job(conn, job_id)
        assert job is not None
        set_phase(conn, job, Phase.EXECUTING)
    return job_id


def _task_id(conn: Connection, task: str, key: str, value: Any) -> int:
    return int(conn.execute(text(
        "SELECT id FROM procrastinate.procrastinate_jobs WHERE task_name = :t "
        "AND args -> :k = CAST(:v AS jsonb)"),
        {"t": task, "k": key, "v": json.dumps(value)}).scalar_one())


def test_recovery_requeues_gives_up_and_drops_each_as_it_should(
        make_archive: Callable[..., Archive], demo_files: list[Path],
        tmp_path: Path) -> None:
    archive = make_archive(worker_stalled_after=5.0)
    paths = [write_template_product(src, tmp_path, "sn1994D", 0.0, z)
             for src, z in zip(phase3_spectra(demo_files), (0.03, 0.05, 0.07),
                               strict=False)]
    assert len(paths) == 3
    archive.ingest(paths)  # queues an arrival task each
    with archive.engine.begin() as conn:
        arrivals = list(conn.execute(text(
            "SELECT id, (args ->> 'version_id')::bigint FROM "
            "procrastinate.procrastinate_jobs WHERE task_name = 'classify.version' "
            "ORDER BY id")).all())
        queued = _uws_job(conn, Phase.QUEUED)  # lost before it left QUEUED
        executing = _uws_job(conn, Phase.EXECUTING)
        gone = _uws_job(conn, Phase.EXECUTING)  # deleted by its owner meanwhile
        live = _uws_job(conn, Phase.EXECUTING)  # its worker still beats
        for task, args in ((CLEANUP_TASK, {"timestamp": 0}),
                           ("classify.version", {"version_id": 999_999_999})):
            conn.execute(text(
                "SELECT procrastinate.procrastinate_defer_jobs_v1(ARRAY[ROW(:q, :t, 0, "
                "NULL, NULL, CAST(:a AS jsonb), NULL)::procrastinate."
                "procrastinate_job_to_defer_v1])"),
                {"q": QUEUE, "t": task, "a": json.dumps(args)})
        dead_worker = conn.execute(text(
            "INSERT INTO procrastinate.procrastinate_workers (last_heartbeat) "
            "VALUES (now() - interval '1 hour') RETURNING id")).scalar_one()
        live_worker = conn.execute(text(
            "SELECT procrastinate.procrastinate_register_worker_v1()")).scalar_one()
        ids = {name: _task_id(conn, "uws.run_job", "job_id", job_id) for name, job_id
               in (("queued", queued), ("executing", executing), ("gone", gone),
                   ("live", live))}
        ids["cleanup"] = _task_id(conn, CLEANUP_TASK, "timestamp", 0)
        # a file gone meanwhile: its problem row cannot be stored
        ids["phantom"] = _task_id(conn, "classify.version", "version_id", 999_999_999)
        ids["poison"], ids["innocent"] = arrivals[0][0], arrivals[1][0]
        for name, task_id in ids.items():  # taken by a worker, as a fetch does
            conn.execute(text(
                "UPDATE procrastinate.procrastinate_jobs SET status = 'doing', "
                "worker_id = :w WHERE id = :id"),
                {"w": live_worker if name == "live" else dead_worker, "id": task_id})
        # the poison file's worker was lost twice before
        conn.execute(text("UPDATE procrastinate.procrastinate_jobs SET attempts = 2 "
                          "WHERE id = ANY(:ids)"),
                     {"ids": [ids["poison"], ids["phantom"]]})
        delete_job(conn, gone)

    assert recover_stalled(archive.settings) == (3, 4)
    assert recover_stalled(archive.settings) == (0, 0)  # nothing twice

    with archive.engine.connect() as conn:
        tasks = {r[0]: (r[1], r[2]) for r in conn.execute(text(
            "SELECT id, status, attempts FROM procrastinate.procrastinate_jobs"))}
        phases = dict(conn.execute(text(
            "SELECT job_id, phase FROM uws.job")).all())
        start = conn.execute(text("SELECT start_time, error_message FROM uws.job "
                                  "WHERE job_id = :id"), {"id": executing}).one()
        problems = dict(conn.execute(text(
            "SELECT version_id, problem FROM archive.classification")).all())
        workers = list(conn.execute(text(
            "SELECT id FROM procrastinate.procrastinate_workers")).scalars())
    # retried, each counted: the lost UWS jobs are QUEUED (start cleared,
    # nothing in the error summary), the arrival task is queued again
    assert tasks[ids["queued"]] == tasks[ids["executing"]] == ("todo", 1)
    assert tasks[ids["innocent"]] == ("todo", 1)
    assert phases[queued] == phases[executing] == "QUEUED"
    assert tuple(start) == (None, None)
    # the live worker's job is left alone
    assert tasks[ids["live"]] == ("doing", 0) and phases[live] == "EXECUTING"
    # dropped: the deleted job's, the cleanup run's, the poison file's (third
    # lost worker: a problem row says so, and it is not queued again), and the
    # gone file's (without a row, and the rest of the recovery kept)
    for name in ("gone", "cleanup", "poison", "phantom"):
        assert ids[name] not in tasks, name
    assert problems == {arrivals[0][1]: "classification stopped its worker 3 times"}
    assert workers == [live_worker]  # the dead worker is pruned

    # the retried arrival task runs alone: no batch claims it, and it claims none
    with archive.engine.connect() as conn, conn.begin() as txn:
        assert [v for _, v in claim_queued(conn, 10)] == [arrivals[2][1]]
        txn.rollback()
    assert classify_arrivals(archive.settings, arrivals[1][1], attempt=1) is not None
    with archive.engine.connect() as conn:
        done = set(conn.execute(text(
            "SELECT version_id FROM archive.classification WHERE problem IS NULL"
        )).scalars())
        left = conn.execute(text(
            "SELECT status FROM procrastinate.procrastinate_jobs WHERE id = :id"),
            {"id": arrivals[2][0]}).scalar_one()
    assert done == {arrivals[1][1]} and left == "todo"


def _run_of_a_stalled_worker(run: JobRun) -> None:
    """Run as a worker that stalls: meanwhile it is taken as lost and the job
    is queued again and started by another; then it comes back to its query."""
    with run.engine.connect() as conn:
        run.record_backend(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        with run.engine.begin() as other:  # the recovery, then another worker
            job = get_job(other, run.job.job_id, lock=True)
            assert job is not None
            set_phase(other, job, Phase.QUEUED, start_time=None)
            job = get_job(other, run.job.job_id)
            assert job is not None
            set_phase(other, job, Phase.EXECUTING)
        try:
            conn.execute(text("SELECT pg_sleep(20)"))
        except OperationalError as exc:  # cancelled by the run's watchdog
            assert "canceling statement" in str(exc)
            return
    raise AssertionError("the stale run's query was not cancelled")


def test_a_stale_run_neither_ends_the_job_nor_keeps_its_query(
        make_archive: Callable[..., Archive], monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_archive()
    monkeypatch.setitem(RUNNERS, "tap", f"{__name__}:_run_of_a_stalled_worker")
    with archive.engine.begin() as conn:
        job_id = _uws_job(conn, Phase.QUEUED)
    started = time.monotonic()
    run_job(archive.settings, job_id)
    assert time.monotonic() - started < 10  # cancelled, not slept through
    with archive.engine.connect() as conn:
        phase, error = conn.execute(text(
            "SELECT phase, error_message FROM uws.job WHERE job_id = :id"),
            {"id": job_id}).one()
    # the new run owns the job: the stale one recorded neither ERROR nor COMPLETED
    assert (phase, error) == ("EXECUTING", None)
