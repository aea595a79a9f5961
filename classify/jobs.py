"""What the job workers do for classification.

- :func:`run_job`: a UWS job of ``/classify/async`` (runner ``classify``).
- :func:`classify_arrivals`: the arrival task ``classify.version``, queued by
  the ingest trigger (migration ``0010_classification``) or by
  ``vo-archive classify-pending``: classify the task's archived file, and a
  batch of further queued ones, with the default options and store the verdicts.
- :func:`classify_version`: classify one archived file and store the verdict.
- :func:`preload`: read and prepare the template library when a worker starts.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from classify.core import CLASSIFIER_VERSION, ClassifyOptions, prepare
from classify.params import parse_classify
from classify.service import (
    archived_spectrum,
    library,
    read_archived,
    read_uploaded,
    result_document,
    run_classifier,
)
from classify.spectrum import SpectrumError
from classify.storage import (
    Spectrum1D,
    claim_queued,
    drop_queued,
    is_classified,
    store_problem,
    store_verdict,
    version_to_classify,
    versions_to_classify,
)
from classify.templates import TemplateLibrary
from vo_archive.access import caller_connection
from vo_archive.config import Settings
from vo_archive.db.engine import get_engine
from vo_archive.ingest.storage import Storage, open_storage
from vo_archive.vo.dali.errors import FatalFault, UsageFault
from vo_archive.vo.dali.params import ParamSet
from vo_archive.vo.uws.jobs import upload_content
from vo_archive.vo.uws.worker import JobRun

log = logging.getLogger(__name__)

#: Files one arrival task classifies: its own and queued ones it claims. A batch
#: of 16 takes about a second of a core and holds back an interactive job at
#: most that long.
BATCH = 16


def run_job(run: JobRun) -> None:
    """Run a classification job and store its result document.

    Parameter errors surface here, at execution, as the job's ERROR phase (as
    for TAP, UWS 1.1 §2.2.3); the spectrum is looked up with the job owner's
    access scope.
    """
    job, settings = run.job, run.settings
    with run.engine.connect() as conn:
        uploads = upload_content(conn, job.job_id)
    if len(uploads) > 1:
        raise UsageFault("upload one spectrum per job")
    req = parse_classify(ParamSet(job.parameters), bool(uploads))
    if req.ident is not None:
        with caller_connection(run.engine, job.caller) as conn:
            spectrum, source = archived_spectrum(conn, req.ident, settings)
    else:
        name, data = next(iter(uploads.items()))
        spectrum, source = read_uploaded(data, name), name
    verdict = run_classifier(spectrum, req.options, library(settings))
    run.store_result([result_document(verdict, source, req.response)],
                     req.response.value)


def _store_one(conn: Connection, storage: Storage, found: Spectrum1D,
               templates: TemplateLibrary, options: ClassifyOptions) -> int | None:
    """Classify one archived file and store the verdict (or why there is none)."""
    try:
        with storage.local_path(found.storage_key) as path:
            spectrum = read_archived(path, found.filename)
        verdict = run_classifier(spectrum, options, templates)
    except (UsageFault, SpectrumError) as exc:
        log.info("classify: %s (version %s) not classified: %s", found.filename,
                 found.version_id, exc)
        return store_problem(conn, found.version_id, CLASSIFIER_VERSION,
                             templates.version, str(exc))
    log.info("classify: %s (version %s): %s z=%s rlap=%s", found.filename,
             found.version_id, verdict.type if verdict.good else "no good match",
             verdict.z, verdict.rlap)
    return store_verdict(conn, found.version_id, verdict)


def classify_version(settings: Settings, version_id: int) -> int | None:
    """Classify an archived file with the default options and store the verdict.

    A file that is already classified by this classifier and library is left
    alone; one that cannot be read as a spectrum gets a row saying why (so
    that it is not queued again). Returns the new classification's id.
    """
    engine = get_engine(settings)
    templates = library(settings)
    with engine.connect() as conn:
        found = version_to_classify(conn, version_id)
        if found is None:
            log.info("classify: version %s is gone; skipped", version_id)
            return None
        if is_classified(conn, version_id, CLASSIFIER_VERSION, templates.version):
            log.info("classify: version %s already classified", version_id)
            return None
    with engine.begin() as conn:
        return _store_one(conn, open_storage(settings), found, templates,
                          ClassifyOptions())


def classify_arrivals(settings: Settings, version_id: int,
                      batch: int = BATCH, attempt: int = 0) -> int | None:
    """Classify a file and up to ``batch - 1`` more queued ones (the arrival task).

    In one transaction: lock further queued arrival tasks (``SKIP LOCKED``, so
    that workers never share one), classify each file that still wants a
    verdict, store the verdicts and remove those tasks from the queue. One
    fetch, one transaction and one commit for a batch of spectra rather than
    for each. Should the worker die meanwhile, the transaction rolls back and
    the claimed tasks are queued as before. An unexpected error in a claimed
    file is logged and its task dropped (as a failed task is); one in the
    task's own file fails the task after the others are stored.

    A task run again after its worker was lost (``attempt`` > 0) classifies
    its own file alone, and is never claimed by another batch: a file that
    kills its worker is found out (and given up, :func:`give_up_arrival`)
    without taking the files batched with it along.

    Returns
    -------
    int or None
        The id of the task's own file's new classification.
    """
    engine = get_engine(settings)
    templates = library(settings)
    options = ClassifyOptions()
    storage = open_storage(settings)
    own: int | None = None
    failure: Exception | None = None
    with engine.begin() as conn:
        claimed = claim_queued(conn, batch - 1 if attempt == 0 else 0)
        order = list(dict.fromkeys([version_id, *(v for _, v in claimed)]))
        todo = versions_to_classify(conn, order, CLASSIFIER_VERSION,
                                    templates.version)
        for vid in order:
            found = todo.get(vid)
            if found is None:
                log.info("classify: version %s is gone or already classified; "
                         "skipped", vid)
                continue
            try:
                new = _store_one(conn, storage, found, templates, options)
            except (SQLAlchemyError, MemoryError):
                raise  # the transaction is lost: everything goes back to the queue
            except Exception as exc:  # one bad file must not hold up the others
                log.exception("classify: %s (version %s) failed", found.filename,
                              vid)
                if vid == version_id:
                    failure = exc
                continue
            if vid == version_id:
                own = new
        drop_queued(conn, [job for job, _ in claimed])
    if failure is not None:
        raise failure
    return own


def give_up_arrival(settings: Settings, conn: Connection, stops: int,
                    version_id: int) -> None:
    """Record that a file's classification stopped its worker ``stops`` times.

    Called by the job workers' recovery in its transaction; the problem row
    keeps the file from being queued again by this classifier and library.
    """
    store_problem(conn, version_id, CLASSIFIER_VERSION, library(settings).version,
                  f"classification stopped its worker {stops} times")


def preload(settings: Settings) -> None:
    """Read the template library and prepare it, once, before jobs arrive.

    A worker process (or the parent of several, which share it) pays the
    library's start-up cost here rather than in its first job.
    """
    try:
        prepare(library(settings))
    except FatalFault as exc:
        log.warning("classify: %s; classification jobs will fail", exc.text)
