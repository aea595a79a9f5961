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

import contextlib
import importlib
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, text

from vo_archive.config import Settings
from vo_archive.db.engine import dispose_engines, get_engine, resolve_dsn
from vo_archive.vo.dali.errors import Fault, TransientFault
from vo_archive.vo.uws.jobs import RESULT_CHUNK, Job, cancel_backend, get_job, set_phase
from vo_archive.vo.uws.phases import Phase

log = logging.getLogger(__name__)

#: Services that run jobs: runner name → "module:function" taking a JobRun.
RUNNERS: dict[str, str] = {"tap": "tap.jobs:run_job",
                           "classify": "classify.jobs:run_job"}
#: Other tasks of the job queue: task name → "module:function" taking the
#: settings and the task's arguments (queued by triggers and commands).
TASKS: dict[str, str] = {"classify.version": "classify.jobs:classify_arrivals"}
#: What becomes of a task of :data:`TASKS` given up after its worker was lost
#: too often ("module:function" taking the settings, the recovery's
#: connection, the number of lost workers and the task's arguments).
GIVE_UP: dict[str, str] = {"classify.version": "classify.jobs:give_up_arrival"}
#: Called with the settings once when a worker starts, before it takes jobs
#: ("module:function"): what every job would otherwise load for itself.
PRELOAD: tuple[str, ...] = ("classify.jobs:preload",)
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
                    row = conn.execute(text(
                        "SELECT phase, start_time FROM uws.job WHERE job_id = :id "
                        "AND destruction > now()"), {"id": self.job.job_id}).first()
                # a new start: this worker was taken as lost and the job queued
                # again (it stalled, then came back); the new run has the job
                if row is None or row[0] != Phase.EXECUTING.value or (
                        row[1] != self.job.start_time):
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


def _task(name: str, table: dict[str, str] = TASKS) -> Callable[..., object]:
    module, _, func = table[name].partition(":")
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
        _finish(engine, job, Phase.ERROR, error_type="transient" if isinstance(
            fault, TransientFault) else "fatal", error_message=fault.text)
    except Exception as exc:  # becomes the job's error summary
        log.exception("job %s failed", job_id)
        _finish(engine, job, Phase.ERROR, error_type="fatal",
                error_message=f"FatalFault: {type(exc).__name__}: {exc}")
    else:
        _finish(engine, job, Phase.COMPLETED)


def _finish(engine: Engine, run: Job, phase: Phase, **fields: Any) -> None:
    """End the run ``run`` of a job, if the job is still in that run."""
    with engine.begin() as conn:
        job = get_job(conn, run.job_id, lock=True)
        if job is None or job.phase is not Phase.EXECUTING:
            return  # aborted or deleted while running
        if job.start_time != run.start_time:
            # this worker stalled and was taken as lost: the job was queued
            # again and runs anew elsewhere; that run ends it
            log.warning("job %s was started again meanwhile; this run's end is "
                        "not recorded", run.job_id)
            return
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


#: procrastinate's running jobs whose worker stopped heart-beating (killed,
#: out of memory, host lost) or was pruned for it; locked, so that two
#: workers recovering at once never both take one.
_STALLED = text(
    "SELECT j.id, j.task_name, j.args, j.attempts "
    "FROM procrastinate.procrastinate_jobs j "
    "LEFT JOIN procrastinate.procrastinate_workers w ON w.id = j.worker_id "
    "WHERE j.status = 'doing' AND j.queue_name = :queue AND (j.worker_id IS NULL "
    "OR w.last_heartbeat < now() - make_interval(secs => :after)) "
    "ORDER BY j.id FOR UPDATE OF j SKIP LOCKED")


def recover_stalled(settings: Settings) -> tuple[int, int]:
    """Queue again the jobs of lost workers; return (requeued, given up) counts.

    A worker killed hard leaves its running jobs in procrastinate's ``doing``
    state for ever. Those whose worker sent no heartbeat for
    ``settings.worker_stalled_after`` seconds are, in one transaction with the
    UWS job's row lock (``max_attempts`` is ``settings.worker_max_attempts``):

    - ``uws.run_job``: an EXECUTING job goes back to QUEUED (its start time
      cleared, the lost query cancelled) and its task is retried; the queries
      are read-only, so running one again is safe. After ``max_attempts``
      lost workers the job ends in ERROR instead (a job that kills its worker
      every time, such as a query running out of memory). A job that left
      QUEUED/EXECUTING meanwhile (aborted, destroyed, deleted) is not run again.
    - other tasks of :data:`TASKS` (arrival classification): retried (and
      told it is a retry: an arrival task then classifies its own file alone),
      or after ``max_attempts`` dropped with a log line and handed to its
      :data:`GIVE_UP` hook (which stores a problem row). The tasks a batch had
      claimed went back to the queue when the lost worker's transaction
      rolled back.
    - anything else (the periodic cleanup): dropped; it runs again anyway.

    Attempts are procrastinate's own count (``attempts``, raised by each retry;
    these tasks have no retry strategy of their own).
    """
    stalled_after, max_attempts = (settings.worker_stalled_after,
                                   settings.worker_max_attempts)
    requeued = given_up = 0
    with get_engine(settings).begin() as conn:
        rows = conn.execute(_STALLED, {"queue": QUEUE, "after": stalled_after}).all()
        for task_id, task, args, attempts in rows:
            stops = int(attempts) + 1
            if task == TASK:
                retry = _requeue_job(conn, str(args.get("job_id")), stops, max_attempts)
            elif task in TASKS:
                retry = stops < max_attempts
                if not retry:
                    log.error("task %s[%s](%s) stopped its worker %d times; dropped",
                              task, task_id, json.dumps(args), stops)
                    _give_up(settings, conn, task, stops, args)
            else:
                retry = False
            if retry:
                conn.execute(text("SELECT procrastinate.procrastinate_retry_job_v2("
                                  ":id, now(), NULL, NULL, NULL)"), {"id": task_id})
                requeued += 1
                log.warning("task %s[%s] lost its worker; queued again (attempt %d)",
                            task, task_id, stops + 1)
            else:
                conn.execute(text("SELECT procrastinate.procrastinate_finish_job_v1("
                                  ":id, 'failed', true)"), {"id": task_id})
                given_up += 1
        conn.execute(text(
            "SELECT procrastinate.procrastinate_prune_stalled_workers_v1(:after)"),
            {"after": stalled_after})
    return requeued, given_up


def _give_up(settings: Settings, conn: Connection, task: str, stops: int,
             args: dict[str, Any]) -> None:
    """Run a given-up task's :data:`GIVE_UP` hook.

    Should the hook fail, the task is dropped all the same; a savepoint keeps
    the rest of the recovery's work.
    """
    if task not in GIVE_UP:
        return
    try:
        with conn.begin_nested():
            _task(task, GIVE_UP)(settings, conn, stops, **args)
    except Exception:  # e.g. the file was deleted meanwhile
        log.exception("giving up task %s(%s)", task, json.dumps(args))


def _requeue_job(conn: Connection, job_id: str, stops: int, max_attempts: int) -> bool:
    """Put a lost UWS job back to QUEUED; say whether its task is to be retried."""
    job = get_job(conn, job_id, lock=True)
    if job is None or job.phase not in (Phase.QUEUED, Phase.EXECUTING):
        log.info("job %s lost its worker but is %s; not run again", job_id,
                 "gone" if job is None else job.phase.value)
        return False
    if job.phase is Phase.EXECUTING:
        cancel_backend(conn, job.backend_pid)  # a lost client's query runs on
    if stops >= max_attempts:
        log.error("job %s stopped its worker %d times; given up", job_id, stops)
        set_phase(conn, job, Phase.ERROR, backend_pid=None, error_type="fatal",
                  error_message=f"FatalFault: the worker running this job stopped "
                                f"{stops} times")
        return False
    if job.phase is Phase.EXECUTING:
        set_phase(conn, job, Phase.QUEUED, backend_pid=None, start_time=None)
    return True


def heartbeat_interval(stalled_after: float) -> float:
    """Return how often a worker beats: four beats within the bound, at most 10 s."""
    return min(10.0, stalled_after / 4)


def _watch_stalled(settings: Settings, stop: threading.Event) -> None:
    """Recover lost workers' jobs now and every half bound until ``stop``."""
    interval = min(30.0, settings.worker_stalled_after / 2)
    while True:
        try:
            requeued, given_up = recover_stalled(settings)
            if requeued or given_up:
                log.info("lost workers' jobs: %d queued again, %d given up",
                         requeued, given_up)
        except Exception:  # keep watching; the database may be back later
            log.exception("recovering lost workers' jobs")
        if stop.wait(interval):
            return


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
        def run_other(context: Any, /, _name: str = name, **kwargs: Any) -> None:
            if context.job.attempts:  # run again after a lost worker: say so
                kwargs["attempt"] = context.job.attempts
            _task(_name)(settings, **kwargs)

        app.task(name=name, queue=QUEUE, pass_context=True)(run_other)

    @app.periodic(cron="* * * * *", periodic_id="uws-cleanup")
    @app.task(name=CLEANUP_TASK, queue=QUEUE, queueing_lock="uws-cleanup")
    def cleanup_task(timestamp: int) -> None:
        destroyed, overrun = cleanup(get_engine(settings))
        if destroyed or overrun:
            log.info("cleanup: %d jobs destroyed, %d aborted", destroyed, overrun)

    return app


def preload(settings: Settings) -> None:
    """Run the services' start-up hooks (:data:`PRELOAD`) in this process."""
    for name in PRELOAD:
        module, _, func = name.partition(":")
        getattr(importlib.import_module(module), func)(settings)


def run_worker(settings: Settings, concurrency: int = 2) -> None:
    """Run a worker until interrupted (SIGINT/SIGTERM finish running jobs first).

    The worker beats (procrastinate's heartbeat) well within the configured
    ``worker_stalled_after``, and at start and every half of that it queues
    again the jobs of workers that stopped beating (:func:`recover_stalled`).
    """
    app = make_app(settings)
    stop = threading.Event()
    threading.Thread(target=_watch_stalled, args=(settings, stop), daemon=True,
                     name="uws-stalled").start()
    try:
        with app.open():
            app.run_worker(queues=[QUEUE], concurrency=concurrency, wait=True,
                           listen_notify=True, delete_jobs="always",
                           fetch_job_polling_interval=2.0,
                           update_heartbeat_interval=heartbeat_interval(
                               settings.worker_stalled_after),
                           stalled_worker_timeout=settings.worker_stalled_after)
    finally:
        stop.set()


def _exit_now(signum: int, _frame: object) -> None:
    os._exit(0)


def run_workers(settings: Settings, processes: int, concurrency: int = 2,
                ready: Callable[[], None] | None = None) -> int:
    """Run ``processes`` worker processes until interrupted; return an exit status.

    The services' start-up hooks run once, here, and the workers are forked
    from this process afterwards, so that they share what was loaded (the
    template library: copy-on-write pages) instead of each reading it. This
    process only supervises: SIGTERM or SIGINT is passed on to the workers
    (which finish their running jobs), and should one worker die the others are
    stopped too, so that whoever runs this sees it and can restart it whole.
    ``ready`` is called once the workers run.
    """
    from vo_archive.ingest.prepare import die_with_parent

    preload(settings)
    if processes <= 1:
        if ready is not None:
            ready()
        run_worker(settings, concurrency)
        return 0
    dispose_engines()  # no connection may be shared across fork()
    children: list[int] = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's own coverage is not collected
            status = 1
            try:
                die_with_parent()  # never outlive the supervisor
                # until the worker takes over SIGTERM (before its first job),
                # there is nothing to finish: stop at once
                signal.signal(signal.SIGTERM, _exit_now)
                signal.signal(signal.SIGINT, _exit_now)
                run_worker(settings, concurrency)
                status = 0
            except BaseException:
                log.exception("job worker failed")
            finally:
                os._exit(status)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if ready is not None:
        ready()
    status = 0
    alive = set(children)
    while alive:
        pid, code = os.wait()
        if pid not in alive:
            continue
        alive.discard(pid)
        if code != 0:
            status = 1
        forward(signal.SIGTERM, None)  # one gone: all go
    return status


RETENTION = timedelta(days=7)
