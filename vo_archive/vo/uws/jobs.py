"""UWS jobs in PostgreSQL (schema ``uws``): create, read, change phase, list, XML.

Phase changes go through :func:`set_phase`, which checks the transition
(:mod:`vo_archive.vo.uws.phases`), writes it and sends ``NOTIFY uws_job`` in the
same transaction, so blocking WAITs (UWS 1.1 §2.2.1.2) wake at once.
"""

from __future__ import annotations

import json
import secrets
import select
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from vo_archive.access import Caller
from vo_archive.vo.dali.errors import xml_text
from vo_archive.vo.uws.phases import ACTIVE, Phase, check_transition

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
CHANNEL = "uws_job"
RESULT_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Job:
    """A UWS job as stored."""

    job_id: str
    runner: str
    run_id: str | None
    base_url: str | None
    owner_name: str | None
    owner_roles: tuple[str, ...]
    phase: Phase
    creation_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    execution_duration: int
    destruction: datetime
    parameters: tuple[tuple[str, str], ...]
    error_type: str | None
    error_message: str | None
    backend_pid: int | None
    result_type: str | None
    result_rows: int | None
    result_size: int | None

    @property
    def caller(self) -> Caller:
        """Return the caller the job runs for (its access scope)."""
        return Caller(self.owner_name, frozenset(self.owner_roles))

    @property
    def quote(self) -> datetime | None:
        """Return the estimated completion time (UWS §2.1.7): unknown."""
        return None


_COLUMNS = ("job_id, runner, run_id, base_url, owner_name, owner_roles, phase, "
            "creation_time, start_time, end_time, execution_duration, destruction, "
            "parameters, error_type, error_message, backend_pid, result_type, "
            "result_rows, result_size")


def _job(row: Any) -> Job:
    m = row._mapping
    return Job(m["job_id"], m["runner"], m["run_id"], m["base_url"], m["owner_name"],
               tuple(m["owner_roles"] or ()), Phase(m["phase"]), m["creation_time"],
               m["start_time"], m["end_time"], m["execution_duration"],
               m["destruction"], tuple((str(a), str(b)) for a, b in m["parameters"]),
               m["error_type"], m["error_message"], m["backend_pid"],
               m["result_type"], m["result_rows"], m["result_size"])


def new_job_id() -> str:
    """Return a fresh, unguessable job id."""
    return secrets.token_hex(8)


def create_job(conn: Connection, runner: str, caller: Caller,
               parameters: Sequence[tuple[str, str]], uploads: dict[str, bytes],
               duration: int, retention: timedelta, base_url: str | None,
               run_id: str | None = None) -> str:
    """Store a new PENDING job; return its id."""
    job_id = new_job_id()
    conn.execute(text(
        "INSERT INTO uws.job (job_id, runner, run_id, base_url, owner_name, "
        "owner_roles, execution_duration, destruction, parameters) VALUES "
        "(:id, :runner, :run_id, :base, :owner, :roles, :dur, now() + :ret, "
        "CAST(:params AS jsonb))"),
        {"id": job_id, "runner": runner, "run_id": run_id, "base": base_url,
         "owner": caller.name, "roles": sorted(caller.roles), "dur": duration,
         "ret": retention, "params": json.dumps([list(p) for p in parameters])})
    for name, content in uploads.items():
        conn.execute(text("INSERT INTO uws.upload (job_id, name, content) "
                          "VALUES (:id, :n, :c)"),
                     {"id": job_id, "n": name, "c": content})
    return job_id


def get_job(conn: Connection, job_id: str, lock: bool = False) -> Job | None:
    """Return a job (None when missing or past its destruction time)."""
    # _COLUMNS is a constant; the job id is bound
    row = conn.execute(text(
        f"SELECT {_COLUMNS} FROM uws.job WHERE job_id = :id AND destruction > now()"  # noqa: S608
        + (" FOR UPDATE" if lock else "")), {"id": job_id}).first()
    return _job(row) if row is not None else None


def list_jobs(conn: Connection, caller: Caller, phases: Sequence[Phase] = (),
              after: datetime | None = None, last: int | None = None,
              limit: int = 1000, runner: str | None = None) -> list[Job]:
    """Return the caller's jobs, oldest first, filtered as UWS 1.1 §2.2.2.1 says.

    With ``runner``, only the jobs of that service (each job list is its own).
    """
    where = ["destruction > now()", "phase <> 'ARCHIVED'",
             "owner_name IS NOT DISTINCT FROM :owner"]
    args: dict[str, Any] = {"owner": caller.name}
    if runner is not None:
        where.append("runner = :runner")
        args["runner"] = runner
    if phases:
        where.append("phase = ANY(:phases)")
        args["phases"] = [p.value for p in phases]
    if after is not None:
        where.append("creation_time > :after")
        args["after"] = after
    n = min(last, limit) if last is not None else limit
    rows = conn.execute(text(
        f"SELECT {_COLUMNS} FROM uws.job WHERE {' AND '.join(where)} "  # noqa: S608
        "ORDER BY creation_time DESC LIMIT :n"), {**args, "n": n}).all()
    return [_job(r) for r in reversed(rows)]


def set_phase(conn: Connection, job: Job, new: Phase, **fields: Any) -> None:
    """Move ``job`` to phase ``new`` (checked) and record ``fields`` with it."""
    check_transition(job.phase, new)
    sets = ["phase = :phase"]
    if new is Phase.EXECUTING:
        sets.append("start_time = now()")
    if new in (Phase.COMPLETED, Phase.ERROR, Phase.ABORTED):
        sets.append("end_time = now()")
    for name in fields:
        sets.append(f"{name} = :{name}")
    conn.execute(text(f"UPDATE uws.job SET {', '.join(sets)} WHERE job_id = :id"),  # noqa: S608
                 {"phase": new.value, "id": job.job_id, **fields})
    conn.execute(text("SELECT pg_notify(:ch, :id)"), {"ch": CHANNEL, "id": job.job_id})


def update_job(conn: Connection, job_id: str, **fields: Any) -> None:
    """Change a job's settable fields (destruction, execution_duration, parameters)."""
    sets = ", ".join(f"{k} = :{k}" for k in fields)
    conn.execute(text(f"UPDATE uws.job SET {sets} WHERE job_id = :id"),  # noqa: S608
                 {"id": job_id, **fields})


def delete_job(conn: Connection, job_id: str) -> None:
    """Remove a job with its uploads and results."""
    conn.execute(text("DELETE FROM uws.job WHERE job_id = :id"), {"id": job_id})
    conn.execute(text("SELECT pg_notify(:ch, :id)"), {"ch": CHANNEL, "id": job_id})


def cancel_backend(conn: Connection, pid: int | None) -> None:
    """Cancel the query a worker runs for a job (ABORT, overrun)."""
    if pid:
        conn.execute(text("SELECT pg_cancel_backend(:pid)"), {"pid": pid})


def upload_content(conn: Connection, job_id: str) -> dict[str, bytes]:
    """Return the inline uploads stored with a job."""
    rows = conn.execute(text("SELECT name, content FROM uws.upload WHERE job_id = :id"),
                        {"id": job_id}).all()
    return {r[0]: bytes(r[1]) for r in rows}


def result_chunks(engine: Engine, job_id: str) -> Iterator[bytes]:
    """Yield a job's stored result, chunk by chunk (memory stays small)."""
    seq = -1
    while True:
        with engine.connect() as conn:
            row = conn.execute(text(
                "SELECT seq, data FROM uws.result_chunk WHERE job_id = :id AND "
                "seq > :s ORDER BY seq LIMIT 1"), {"id": job_id, "s": seq}).first()
        if row is None:
            return
        seq = row[0]
        yield bytes(row[1])


_listen_engines: dict[str, Engine] = {}


def _listen_engine(engine: Engine) -> Engine:
    """Return an unpooled engine for LISTEN.

    A long WAIT must not hold one of the pooled connections that queries need.
    """
    key = engine.url.render_as_string(hide_password=False)
    found = _listen_engines.get(key)
    if found is None:
        found = create_engine(engine.url, poolclass=NullPool)
        _listen_engines[key] = found
    return found


def wait_for_change(engine: Engine, job_id: str, phase: Phase, timeout: float) -> None:
    """Block until the job leaves ``phase`` or ``timeout`` seconds pass."""
    raw = _listen_engine(engine).raw_connection()
    try:
        dbapi: Any = raw.dbapi_connection
        dbapi.autocommit = True
        cur = dbapi.cursor()
        cur.execute(f"LISTEN {CHANNEL}")
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        while True:
            cur.execute("SELECT phase FROM uws.job WHERE job_id = %s AND "
                        "destruction > now()", (job_id,))
            row = cur.fetchone()
            if row is None or row[0] != phase.value:
                return
            left = (deadline - datetime.now(UTC)).total_seconds()
            if left <= 0:
                return
            if select.select([dbapi], [], [], min(left, 5.0)) != ([], [], []):
                dbapi.poll()
                dbapi.notifies.clear()
    finally:
        try:
            dbapi.cursor().execute(f"UNLISTEN {CHANNEL}")
            dbapi.autocommit = False
        except Exception:  # noqa: S110 - the connection is discarded anyway
            pass
        raw.close()


# --- XML (UWS 1.1 §2.2, UWS.xsd) ---------------------------------------------

def iso(ts: datetime | None) -> str:
    """Return an ISO 8601 UTC time with ``Z`` (empty for None)."""
    if ts is None:
        return ""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{ts.astimezone(UTC).microsecond // 1000:03d}Z"


def _time_el(tag: str, ts: datetime | None) -> str:
    if ts is None:
        return f'<uws:{tag} xsi:nil="true"/>'
    return f"<uws:{tag}>{iso(ts)}</uws:{tag}>"


def parameters_xml(job: Job) -> str:
    """Return the ``<uws:parameters>`` element: each parameter once, in order."""
    seen: dict[str, str] = {}
    for name, value in job.parameters:
        if name.upper() in seen:
            continue
        seen[name.upper()] = value
    items = []
    for name, value in job.parameters:
        if name.upper() not in seen:
            continue
        value = seen.pop(name.upper())
        ref = ' byReference="true"' if name.upper() == "UPLOAD" else ""
        items.append(f"<uws:parameter id={quoteattr(xml_text(name.lower()))}{ref}>"
                     f"{escape(xml_text(value))}</uws:parameter>")
    return "<uws:parameters>" + "".join(items) + "</uws:parameters>"


def results_xml(job: Job, job_url: str) -> str:
    """Return ``<uws:results>``: one ``result`` with id="result" when completed."""
    if job.phase is not Phase.COMPLETED or job.result_type is None:
        return "<uws:results/>"
    href = f"{job_url}/results/result"
    extra = f' size="{job.result_size}"' if job.result_size is not None else ""
    return ('<uws:results><uws:result id="result" xlink:type="simple" '
            f'xlink:href={quoteattr(href)} mime-type={quoteattr(job.result_type)}'
            f"{extra}/></uws:results>")


def error_xml(job: Job) -> str:
    """Return ``<uws:errorSummary>`` for a job in ERROR (empty otherwise)."""
    if job.phase is not Phase.ERROR:
        return ""
    kind = job.error_type or "fatal"
    return (
        f'<uws:errorSummary type="{kind}" hasDetail="true">'
        f"<uws:message>{escape(xml_text(job.error_message or 'job failed'))}"
        "</uws:message>"
        "</uws:errorSummary>"
    )


def job_document(job: Job, job_url: str) -> bytes:
    """Return the UWS job document."""
    owner = (f"<uws:ownerId>{escape(job.owner_name)}</uws:ownerId>" if job.owner_name
             else '<uws:ownerId xsi:nil="true"/>')
    run = f"<uws:runId>{escape(xml_text(job.run_id))}</uws:runId>" if job.run_id else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<uws:job xmlns:uws="{UWS_NS}" xmlns:xlink="{XLINK_NS}" '
        f'xmlns:xsi="{XSI_NS}" version="1.1">'
        f"<uws:jobId>{escape(job.job_id)}</uws:jobId>{run}{owner}"
        f"<uws:phase>{job.phase.value}</uws:phase>"
        + _time_el("quote", job.quote)
        + _time_el("creationTime", job.creation_time)
        + _time_el("startTime", job.start_time)
        + _time_el("endTime", job.end_time)
        + f"<uws:executionDuration>{job.execution_duration}</uws:executionDuration>"
        + _time_el("destruction", job.destruction)
        + parameters_xml(job) + results_xml(job, job_url) + error_xml(job)
        + "</uws:job>\n").encode()


def joblist_document(jobs: Sequence[Job], list_url: str) -> bytes:
    """Return the UWS job list."""
    refs = "".join(
        f'<uws:jobref id={quoteattr(j.job_id)} xlink:type="simple" '
        f'xlink:href={quoteattr(list_url + "/" + j.job_id)}>'
        f"<uws:phase>{j.phase.value}</uws:phase>"
        + (f"<uws:runId>{escape(xml_text(j.run_id))}</uws:runId>" if j.run_id else "")
        + (f"<uws:ownerId>{escape(j.owner_name)}</uws:ownerId>" if j.owner_name
           else '<uws:ownerId xsi:nil="true"/>')
        + f"<uws:creationTime>{iso(j.creation_time)}</uws:creationTime>"
        "</uws:jobref>" for j in jobs)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<uws:jobs xmlns:uws="{UWS_NS}" xmlns:xlink="{XLINK_NS}" '
            f'xmlns:xsi="{XSI_NS}" version="1.1">{refs}</uws:jobs>\n').encode()


def is_active(job: Job) -> bool:
    """Whether the job may still change by itself."""
    return job.phase in ACTIVE
