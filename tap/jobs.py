"""The TAP runner of UWS jobs: what a worker does with a queued TAP job."""

from __future__ import annotations

from sqlalchemy import Engine

from tap.params import parse_tap
from tap.query import Limits, ResultSet, execute
from tap.service import prepare, result_document
from tap.uploads import resolve
from vo_archive.db.readers import read_nodes
from vo_archive.vo.dali.params import ParamSet
from vo_archive.vo.uws.jobs import upload_content
from vo_archive.vo.uws.worker import JobRun
from vo_archive.web import fetch

#: Statement timeout of jobs with executionduration 0 ("unlimited"), seconds.
UNLIMITED_S = 4 * 3600


def run_job(run: JobRun) -> None:
    """Run a TAP job and store its result.

    Parameter and ADQL errors surface here, at execution, as TAP 1.1 §2.7
    wants; they raise faults that the worker turns into the job's ERROR
    phase and error summary.
    """
    job, settings = run.job, run.settings
    request = parse_tap(ParamSet(job.parameters), settings.maxrec_default,
                        settings.maxrec_hard)
    with run.engine.connect() as conn:
        stored = upload_content(conn, job.job_id)
    contents = resolve(request.uploads, stored.get, fetch.policy(settings))
    translation, tables = prepare(request, contents)
    base = (job.base_url or settings.base_url or "").rstrip("/")
    duration = job.execution_duration or UNLIMITED_S
    def absolute(path: str) -> str:
        return base + "/" + path.lstrip("/")

    limits = Limits(duration, request.maxrec)

    def query(engine: Engine) -> ResultSet:
        # the job's state stays on the primary (run.engine); the query itself
        # may run on a standby, where the job's ABORT cancels it (record_backend)
        return execute(engine, job.caller, translation, tables, limits,
                       lambda p: base + p,
                       on_backend=lambda pid: run.record_backend(pid, engine))

    # TAP_UPLOAD tables are temporary tables: only the primary can make them
    rs = (query(run.engine) if translation.uploads
          else read_nodes(settings).run(query))
    try:
        doc = result_document(rs, request, absolute)
        writer = request.output.format.writer
        run.store_result(writer(doc, rs.rows(), request.maxrec),
                         request.output.content_type)
    finally:
        rs.close()
