"""UWS 1.1 HTTP binding (§2.2): the job list and job resources, as a blueprint.

A service gets its own blueprint with :func:`make_uws_blueprint` (TAP mounts
it at ``/tap/async``). Creating a job answers 303 to it; PHASE=RUN queues it
for the workers (:mod:`vo_archive.vo.uws.worker`); ABORT cancels a running query;
DELETE (or ACTION=DELETE) removes it and answers 303 to the job list.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, timedelta

from flask import Blueprint, Response, redirect, request
from sqlalchemy import Connection

from vo_archive import web
from vo_archive.access import Caller, current_caller
from vo_archive.vo.dali.errors import (
    AuthorizationFault,
    FaultStyle,
    NotFoundFault,
    UsageFault,
    votable_error_document,
)
from vo_archive.vo.dali.params import ParamSet, parse_int, parse_timestamp
from vo_archive.vo.uws.jobs import (
    Job,
    cancel_backend,
    create_job,
    delete_job,
    get_job,
    iso,
    job_document,
    joblist_document,
    list_jobs,
    parameters_xml,
    result_chunks,
    results_xml,
    set_phase,
    update_job,
    wait_for_change,
)
from vo_archive.vo.uws.phases import ACTIVE, Phase, PhaseError
from vo_archive.vo.uws.worker import enqueue

MAX_WAIT = 60
XML = "text/xml"


def _xml(body: bytes) -> Response:
    return Response(body, mimetype=XML)


def _plain(value: str) -> Response:
    return Response(value + "\n", content_type="text/plain; charset=utf-8")


def make_uws_blueprint(name: str, runner: str, default_duration: int,
                       max_duration: int, retention: timedelta,
                       max_retention: timedelta,
                       inline_parts: Callable[[], dict[str, bytes]] | None = None
                       ) -> Blueprint:
    """Return a blueprint serving a UWS job list for jobs of ``runner``.

    Parameters
    ----------
    name
        Blueprint name.
    runner
        Name of the job runner (:data:`vo_archive.vo.uws.worker.RUNNERS`).
    default_duration, max_duration
        executionduration given to new jobs and the most a client may ask, s.
    retention, max_retention
        Time until destruction of new jobs, and the latest destruction allowed.
    inline_parts
        Returns the request's multipart file parts (inline uploads) to keep
        with a new job.
    """
    bp = Blueprint(name, __name__)
    web.set_fault_style(name, FaultStyle.TEXT)

    def job_url(job_id: str) -> str:
        return web.absolute(f"{_list_path()}/{job_id}")

    def _list_path() -> str:
        path = request.path
        marker = "/async"
        return path[: path.index(marker) + len(marker)] if marker in path else path

    def load(conn: Connection, job_id: str, lock: bool = False) -> Job:
        job = get_job(conn, job_id, lock)
        if job is None or job.runner != runner:  # another service's job list
            raise NotFoundFault(f"no job {job_id}")
        caller = current_caller()
        if job.owner_name is not None and job.owner_name != caller.name:
            raise AuthorizationFault(f"job {job_id} belongs to another user")
        return job

    def to_job(job_id: str) -> Response:
        return redirect(job_url(job_id), code=303)  # type: ignore[return-value]

    def run(conn: Connection, job: Job) -> None:
        if job.phase is Phase.PENDING:
            set_phase(conn, job, Phase.QUEUED)
            enqueue(conn, job.job_id)
        elif job.phase not in (Phase.QUEUED, Phase.EXECUTING):
            raise UsageFault(f"job {job.job_id} is {job.phase.value}; it cannot run "
                             "again")

    def abort(conn: Connection, job: Job) -> None:
        if job.phase in ACTIVE:
            cancel_backend(conn, job.backend_pid)
            set_phase(conn, job, Phase.ABORTED)

    @bp.route("", methods=["GET"])
    def job_list() -> Response:
        p = web.params()
        phases = []
        for v in p.all("PHASE"):
            try:
                phases.append(Phase(v.upper()))
            except ValueError:
                raise UsageFault(f"PHASE={v} is not a UWS phase", "PHASE") from None
        after = p.single("AFTER")
        after_ts = (parse_timestamp(after, "AFTER").replace(tzinfo=UTC)
                    if after else None)
        last = p.single("LAST")
        last_n = parse_int(last, "LAST") if last else None
        if last_n is not None and last_n <= 0:
            raise UsageFault("LAST must be a positive integer", "LAST")
        with web.engine().connect() as conn:
            jobs = list_jobs(conn, current_caller(), phases, after_ts, last_n,
                             runner=runner)
        return _xml(joblist_document(jobs, web.absolute(_list_path())))

    @bp.route("", methods=["POST"])
    def job_create() -> Response:
        p = web.params()
        caller: Caller = current_caller()
        params = [(n, v) for n, v in p.items() if n not in ("PHASE",)]
        duration = default_duration
        uploads = inline_parts() if inline_parts else {}
        with web.engine().begin() as conn:
            job_id = create_job(conn, runner, caller, params, uploads, duration,
                                retention, web.base_url(), p.single("RUNID"))
            if (p.single("PHASE") or "").upper() == "RUN":
                job = get_job(conn, job_id, lock=True)
                if job is None:
                    raise AssertionError(f"job {job_id} is gone right after creation")
                run(conn, job)
        return to_job(job_id)

    @bp.route("/<job_id>", methods=["GET"])
    def job_get(job_id: str) -> Response:
        p = web.params()
        wait = p.single("WAIT")
        with web.engine().connect() as conn:
            job = load(conn, job_id)
        if wait is not None and job.phase in ACTIVE:
            seconds = parse_int(wait, "WAIT")
            want = p.single("PHASE")
            if seconds != 0 and (want is None or want.upper() == job.phase.value):
                timeout = MAX_WAIT if seconds < 0 else min(seconds, MAX_WAIT)
                wait_for_change(web.engine(), job_id, job.phase, timeout)
                with web.engine().connect() as conn:
                    job = load(conn, job_id)
        return _xml(job_document(job, job_url(job_id)))

    @bp.route("/<job_id>", methods=["POST", "DELETE"])
    def job_post(job_id: str) -> Response:
        p = web.params()
        if request.method == "POST" and (p.single("ACTION") or "").upper() != "DELETE":
            if p.single("PHASE"):
                return phase_post(job_id)
            raise UsageFault("POST to a job needs ACTION=DELETE", "ACTION")
        with web.engine().begin() as conn:
            job = load(conn, job_id, lock=True)
            abort(conn, job)
            delete_job(conn, job_id)
        return redirect(web.absolute(_list_path()), code=303)  # type: ignore[return-value]

    @bp.route("/<job_id>/phase", methods=["GET"])
    def phase_get(job_id: str) -> Response:
        with web.engine().connect() as conn:
            return _plain(load(conn, job_id).phase.value)

    @bp.route("/<job_id>/phase", methods=["POST"])
    def phase_post(job_id: str) -> Response:
        value = (web.params().single("PHASE") or "").upper()
        with web.engine().begin() as conn:
            job = load(conn, job_id, lock=True)
            try:
                if value == "RUN":
                    run(conn, job)
                elif value == "ABORT":
                    abort(conn, job)
                else:
                    raise UsageFault(f"PHASE={value} is not RUN or ABORT", "PHASE")
            except PhaseError as exc:
                raise UsageFault(str(exc), "PHASE") from None
        return to_job(job_id)

    @bp.route("/<job_id>/executionduration", methods=["GET", "POST"])
    def duration(job_id: str) -> Response:
        with web.engine().begin() as conn:
            job = load(conn, job_id, lock=request.method == "POST")
            if request.method == "GET":
                return _plain(str(job.execution_duration))
            raw = web.params().required("EXECUTIONDURATION")
            seconds = parse_int(raw, "EXECUTIONDURATION")
            if seconds < 0:
                raise UsageFault("EXECUTIONDURATION must not be negative")
            if job.phase is not Phase.PENDING:
                raise UsageFault(f"job is {job.phase.value}; executionduration can "
                                 "only change while PENDING")
            seconds = max_duration if seconds == 0 else min(seconds, max_duration)
            update_job(conn, job_id, execution_duration=seconds)
        return to_job(job_id)

    @bp.route("/<job_id>/destruction", methods=["GET", "POST"])
    def destruction(job_id: str) -> Response:
        with web.engine().begin() as conn:
            job = load(conn, job_id, lock=request.method == "POST")
            if request.method == "GET":
                return _plain(iso(job.destruction))
            raw = web.params().required("DESTRUCTION")
            when = parse_timestamp(raw, "DESTRUCTION").replace(tzinfo=UTC)
            latest = job.creation_time + max_retention
            update_job(conn, job_id, destruction=min(when, latest))
        return to_job(job_id)

    @bp.route("/<job_id>/quote", methods=["GET"])
    def quote(job_id: str) -> Response:
        with web.engine().connect() as conn:
            return _plain(iso(load(conn, job_id).quote))

    @bp.route("/<job_id>/owner", methods=["GET"])
    def owner(job_id: str) -> Response:
        with web.engine().connect() as conn:
            return _plain(load(conn, job_id).owner_name or "")

    @bp.route("/<job_id>/error", methods=["GET"])
    def error(job_id: str) -> Response:
        with web.engine().connect() as conn:
            job = load(conn, job_id)
        if job.phase is not Phase.ERROR:
            raise NotFoundFault(f"job {job_id} has no error ({job.phase.value})")
        body = votable_error_document(job.error_message or "FatalFault: job failed")
        return Response(body, content_type="application/x-votable+xml")

    @bp.route("/<job_id>/parameters", methods=["GET", "POST"])
    def parameters(job_id: str) -> Response:
        with web.engine().begin() as conn:
            job = load(conn, job_id, lock=request.method == "POST")
            if request.method == "GET":
                return _xml(('<?xml version="1.0" encoding="UTF-8"?>\n'
                             '<uws:parameters xmlns:uws="http://www.ivoa.net/xml/UWS'
                             '/v1.0">' + parameters_xml(job)[len("<uws:parameters>"):]
                             ).encode())
            if job.phase is not Phase.PENDING:
                raise UsageFault(f"job is {job.phase.value}; parameters can only "
                                 "change while PENDING")
            new = ParamSet(web.params().items())
            names = set(new.names())
            kept = [(n, v) for n, v in job.parameters if n.upper() not in names]
            update_job(conn, job_id, parameters=json.dumps(
                [list(x) for x in kept + new.items()]))
        return to_job(job_id)

    @bp.route("/<job_id>/results", methods=["GET"])
    def results(job_id: str) -> Response:
        with web.engine().connect() as conn:
            job = load(conn, job_id)
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                + results_xml(job, job_url(job_id)).replace(
                    "<uws:results", '<uws:results xmlns:uws="http://www.ivoa.net/xml/'
                    'UWS/v1.0" xmlns:xlink="http://www.w3.org/1999/xlink"', 1))
        return _xml(body.encode())

    @bp.route("/<job_id>/results/result", methods=["GET"])
    def result(job_id: str) -> Response:
        with web.engine().connect() as conn:
            job = load(conn, job_id)
        if job.phase is not Phase.COMPLETED or job.result_type is None:
            raise NotFoundFault(f"job {job_id} has no result ({job.phase.value})")
        resp = Response(result_chunks(web.engine(), job_id),
                        content_type=job.result_type)
        if job.result_size is not None:
            resp.headers["Content-Length"] = str(job.result_size)
        return resp

    return bp
