"""The job worker: runs queued UWS jobs from a durable PostgreSQL queue.

Jobs are queued with procrastinate (schema ``procrastinate``, created by the
``0002_tap`` migration) in the same transaction that moves them to QUEUED, so
a job is never queued without being recorded or recorded without being queued.
Worker processes (``vo-archive worker``) are separate from the web workers and
may run on other hosts: everything they need (parameters, inline uploads, the
caller's scope) is in the job row, and results go back into PostgreSQL.

A job's service is looked up in :data:`RUNNERS` (``runner`` column), so the
core never imports a protocol package.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text

from vo_archive.config import Settings
from vo_archive.db.engine import get_engine, resolve_dsn
from vo_archive.vo.dali.errors import Fault, TransientFault
from vo_archive.vo.uws.jobs import RESULT_CHUNK, Job, cancel_backend, get_job, set_phase
from vo_archive.vo.uws.phases import Phase

log = logging.getLogger(__name__)

#: Services that run jobs: runner name → "module:function" taking a JobRun.
RUNNERS: dict[str, str] = {"tap": "tap.jobs:run_job",
                           "classify": "classify.jobs:run_job"}
#: Other tasks of the job queue: task name → "module:function" taking the
#: settings and the task's arguments (queued by triggers and commands).
TASKS: dict[str, str] = {"classify.version": "classify.jobs:classify_version"}
QUEUE = "uws"
TASK = "uws.run_job"
CLEANUP_TASK = "uws.cleanup"
#: How often a running job checks whether it was aborted, seconds.
WATCH_INTERVAL = 0.5


def enqueue(conn: Connection, job_id: str) -> None:
    """Queue a job for the workers, in the caller's transaction.

    Calls procrastinate's own deferral function (schema 3.10), so the queue
    row and the job's QUEUED phase commit together.
    """
    conn.execute(text(
        "SELECT procrastinate.procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, "
        "0, NULL, NULL, CAST(:args AS jsonb), NULL)::"
        "procrastinate.procrastinate_job_to_defer_v1])"),
        {"queue": QUEUE, "task": TASK, "args": json.dumps({"job_id": job_id})})


@dataclass
class JobRun:
    """What a runner gets: the job, the archive, and ways to report back."""

    settings: Settings
    engine: Engine
    job: Job
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record_backend(self, pid: int, engine: Engine | None = None) -> None:
        """Remember which database backend runs the job's query, and watch it.

        ABORT cancels the query from the web server at once; but an ABORT that
        lands between this call and the query's start would find nothing to
        cancel, so a watchdog thread also cancels the backend as soon as the
        job leaves EXECUTING (aborted, deleted, or destroyed).

        A query on a standby (``engine`` is not the primary's) has a backend
        the web server cannot reach through the primary: its pid is not
        recorded (it would name another process there), and the watchdog
        cancels it on the standby.
        """
        on_primary = engine is None or engine is self.engine
        if on_primary:
            with self.engine.begin() as conn:
                conn.execute(text(
                    "UPDATE uws.job SET backend_pid = :p WHERE job_id = :id"),
                    {"p": pid, "id": self.job.job_id})
        threading.Thread(target=self._watch, args=(pid, engine or self.engine),
                         daemon=True, name=f"uws-watch-{self.job.job_id}").start()

    def _watch(self, pid: int, node: Engine) -> None:
        while not self.done.wait(WATCH_INTERVAL):
            try:
                with self.engine.begin() as conn:
                    phase = conn.execute(text(
                        "SELECT phase FROM uws.job WHERE job_id = :id "
                        "AND destruction > now()"), {"id": self.job.job_id}).scalar()
                if phase != Phase.EXECUTING.value:
                    with self.lock:  # never cancel once the runner is done
                        if not self.done.is_set():
                            with node.begin() as conn:
                                cancel_backend(conn, pid)
                    return
            except Exception:  # keep watching; the job may end
                log.exception("watching job %s", self.job.job_id)

    def store_result(self, chunks: Iterable[bytes], mime: str) -> int:
        """Store the result document in chunks of about 1 MiB; return its size."""
        seq = 0
        size = 0
        buf = bytearray()

        def flush() -> None:
            nonlocal seq
            with self.engine.begin() as conn:
                conn.execute(text("INSERT INTO uws.result_chunk (job_id, seq, data) "
                                  "VALUES (:id, :s, :d)"),
                             {"id": self.job.job_id, "s": seq, "d": bytes(buf)})
            seq += 1
            buf.clear()

        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM uws.result_chunk WHERE job_id = :id"),
                         {"id": self.job.job_id})
        for chunk in chunks:
            buf += chunk
            size += len(chunk)
            if len(buf) >= RESULT_CHUNK:
                flush()
        if buf or seq == 0:
            flush()
        with self.engine.begin() as conn:
            conn.execute(text("UPDATE uws.job SET result_type = :t, result_size = :s "
                              "WHERE job_id = :id"),
                         {"t": mime, "s": size, "id": self.job.job_id})
        return size


def _runner(name: str) -> Callable[[JobRun], None]:
    module, _, func = RUNNERS[name].partition(":")
    fn: Callable[[JobRun], None] = getattr(importlib.import_module(module), func)
    return fn


def _task(name: str) -> Callable[..., object]:
    module, _, func = TASKS[name].partition(":")
    fn: Callable[..., object] = getattr(importlib.import_module(module), func)
    return fn


def run_job(settings: Settings, job_id: str) -> None:
    """Run one queued job to COMPLETED, ERROR or (if aborted meanwhile) ABORTED."""
    engine = get_engine(settings)
    with engine.begin() as conn:
        job = get_job(conn, job_id, lock=True)
        if job is None or job.phase is not Phase.QUEUED:
            log.info("job %s is no longer queued; skipped", job_id)
            return
        set_phase(conn, job, Phase.EXECUTING)
        job = get_job(conn, job_id)
    if job is None:
        raise AssertionError(f"job {job_id} is gone right after it was set executing")
    run = JobRun(settings, engine, job)
    try:
        try:
            _runner(job.runner)(run)
        finally:
            with run.lock:
                run.done.set()
    except Fault as fault:
        _finish(engine, job_id, Phase.ERROR, error_type="transient" if isinstance(
            fault, TransientFault) else "fatal", error_message=fault.text)
    except Exception as exc:  # becomes the job's error summary
        log.exception("job %s failed", job_id)
        _finish(engine, job_id, Phase.ERROR, error_type="fatal",
                error_message=f"FatalFault: {type(exc).__name__}: {exc}")
    else:
        _finish(engine, job_id, Phase.COMPLETED)


def _finish(engine: Engine, job_id: str, phase: Phase, **fields: Any) -> None:
    with engine.begin() as conn:
        job = get_job(conn, job_id, lock=True)
        if job is None or job.phase is not Phase.EXECUTING:
            return  # aborted or deleted while running
        set_phase(conn, job, phase, backend_pid=None, **fields)


def cleanup(engine: Engine) -> tuple[int, int]:
    """Destroy expired jobs and abort overrunning ones; return both counts."""
    with engine.begin() as conn:
        destroyed = conn.execute(text(
            "DELETE FROM uws.job WHERE destruction <= now()")).rowcount
        overrun = conn.execute(text(
            "SELECT job_id FROM uws.job WHERE phase = 'EXECUTING' AND "
            "execution_duration > 0 AND start_time + execution_duration * "
            "interval '1 second' + interval '5 seconds' < now() FOR UPDATE")).all()
        for (job_id,) in overrun:
            job = get_job(conn, job_id)
            if job is not None:
                cancel_backend(conn, job.backend_pid)
                set_phase(conn, job, Phase.ABORTED,
                          error_message="execution duration exceeded")
    return destroyed, len(overrun)


def make_app(settings: Settings) -> Any:
    """Return the procrastinate app with the job and cleanup tasks."""
    import procrastinate

    dsn = resolve_dsn(settings)
    connector = procrastinate.PsycopgConnector(
        conninfo=dsn, kwargs={"options": "-c search_path=procrastinate,public"},
        min_size=1, max_size=4)
    app = procrastinate.App(connector=connector)

    @app.task(name=TASK, queue=QUEUE)
    def run_task(job_id: str) -> None:
        run_job(settings, job_id)

    for name in TASKS:
        def run_other(_name: str = name, **kwargs: Any) -> None:
            _task(_name)(settings, **kwargs)

        app.task(name=name, queue=QUEUE)(run_other)

    @app.periodic(cron="* * * * *", periodic_id="uws-cleanup")
    @app.task(name=CLEANUP_TASK, queue=QUEUE, queueing_lock="uws-cleanup")
    def cleanup_task(timestamp: int) -> None:
        destroyed, overrun = cleanup(get_engine(settings))
        if destroyed or overrun:
            log.info("cleanup: %d jobs destroyed, %d aborted", destroyed, overrun)

    return app


def run_worker(settings: Settings, concurrency: int = 2) -> None:
    """Run a worker until interrupted (SIGINT/SIGTERM finish running jobs first)."""
    app = make_app(settings)
    with app.open():
        app.run_worker(queues=[QUEUE], concurrency=concurrency, wait=True,
                       listen_notify=True, delete_jobs="always",
                       fetch_job_polling_interval=2.0)


RETENTION = timedelta(days=7)
