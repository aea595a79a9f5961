"""UWS jobs in PostgreSQL: phases, the caller's scope in the worker, cleanup."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from tests.conftest import Archive
from vo_archive.access import ANONYMOUS, Caller
from vo_archive.vo.uws.jobs import create_job, get_job, set_phase
from vo_archive.vo.uws.phases import Phase, PhaseError, check_transition
from vo_archive.vo.uws.worker import cleanup, run_job

COUNT = [("LANG", "ADQL"), ("QUERY", "SELECT COUNT(*) AS n FROM ivoa.ObsCore")]


@pytest.mark.parametrize(("a", "b", "ok"), [
    (Phase.PENDING, Phase.QUEUED, True), (Phase.QUEUED, Phase.EXECUTING, True),
    (Phase.EXECUTING, Phase.COMPLETED, True), (Phase.EXECUTING, Phase.ABORTED, True),
    (Phase.COMPLETED, Phase.EXECUTING, False), (Phase.ABORTED, Phase.QUEUED, False),
    (Phase.PENDING, Phase.COMPLETED, False), (Phase.ERROR, Phase.QUEUED, False),
    # a lost worker's job is queued again (the recovery alone does this)
    (Phase.EXECUTING, Phase.QUEUED, True), (Phase.COMPLETED, Phase.QUEUED, False)])
def test_transitions(a: Phase, b: Phase, ok: bool) -> None:
    if ok:
        check_transition(a, b)
    else:
        with pytest.raises(PhaseError):
            check_transition(a, b)


def _run(archive: Archive, caller: Caller) -> bytes:
    with archive.engine.begin() as conn:
        job_id = create_job(conn, "tap", caller, COUNT, {}, 60, timedelta(hours=1),
                            "http://x")
        job = get_job(conn, job_id)
        assert job is not None
        set_phase(conn, job, Phase.QUEUED)
    run_job(archive.settings, job_id)
    with archive.engine.connect() as conn:
        job = get_job(conn, job_id)
        assert job is not None and job.phase is Phase.COMPLETED, job
        return b"".join(bytes(r[0]) for r in conn.execute(text(
            "SELECT data FROM uws.result_chunk WHERE job_id = :id ORDER BY seq"),
            {"id": job_id}))


def test_worker_applies_the_callers_scope(demo_archive: Archive) -> None:
    import io

    from astropy.io.votable import parse

    def count(doc: bytes) -> int:
        return int(parse(io.BytesIO(doc)).get_first_table().array["n"][0])

    anonymous = count(_run(demo_archive, ANONYMOUS))
    member = count(_run(demo_archive, Caller("bob", frozenset({"member"}))))
    assert 0 < anonymous < member


def test_cleanup_destroys_expired_jobs(make_archive) -> None:
    archive = make_archive()
    with archive.engine.begin() as conn:
        old = create_job(conn, "tap", ANONYMOUS, COUNT, {"t": b"x"}, 60,
                         timedelta(seconds=-1), None)
        new = create_job(conn, "tap", ANONYMOUS, COUNT, {}, 60, timedelta(hours=1),
                         None)
        assert get_job(conn, old) is None  # past destruction: gone at once
    destroyed, _ = cleanup(archive.engine)
    assert destroyed == 1
    with archive.engine.connect() as conn:
        ids = set(conn.execute(text("SELECT job_id FROM uws.job")).scalars())
        uploads = conn.execute(text("SELECT count(*) FROM uws.upload")).scalar_one()
    assert ids == {new} and uploads == 0
