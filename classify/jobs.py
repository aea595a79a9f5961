"""What the job workers do for classification.

- :func:`run_job`: a UWS job of ``/classify/async`` (runner ``classify``).
- :func:`classify_version`: the arrival task ``classify.version``, queued by the
  ingest trigger (migration ``0010_classification``) or by
  ``vo-archive classify-pending``: classify one archived file with the default
  options and store the verdict.
"""

from __future__ import annotations

import logging

from classify.core import CLASSIFIER_VERSION, ClassifyOptions
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
    is_classified,
    store_problem,
    store_verdict,
    version_to_classify,
)
from vo_archive.access import caller_connection
from vo_archive.config import Settings
from vo_archive.db.engine import get_engine
from vo_archive.ingest.storage import Storage
from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import ParamSet
from vo_archive.vo.uws.jobs import upload_content
from vo_archive.vo.uws.worker import JobRun

log = logging.getLogger(__name__)


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


def classify_version(settings: Settings, version_id: int) -> int | None:
    """Classify an archived file with the default options and store the verdict.

    A file that is already classified by this classifier and library is left
    alone; one that cannot be read as a spectrum gets a row saying why (so
    that it is not queued again). Returns the new classification's id.
    """
    engine = get_engine(settings)
    templates = library(settings)
    options = ClassifyOptions()
    with engine.connect() as conn:
        found = version_to_classify(conn, version_id)
        if found is None:
            log.info("classify: version %s is gone; skipped", version_id)
            return None
        if is_classified(conn, version_id, CLASSIFIER_VERSION, templates.version):
            log.info("classify: version %s already classified", version_id)
            return None
    path = Storage(settings.storage_dir).path_of(found.storage_key)
    try:
        verdict = run_classifier(read_archived(path, found.filename), options,
                                 templates)
    except (UsageFault, SpectrumError) as exc:
        with engine.begin() as conn:
            new = store_problem(conn, version_id, CLASSIFIER_VERSION,
                                templates.version, str(exc))
        log.info("classify: %s (version %s) not classified: %s", found.filename,
                 version_id, exc)
        return new
    with engine.begin() as conn:
        new = store_verdict(conn, version_id, verdict)
    log.info("classify: %s (version %s): %s z=%s rlap=%s", found.filename, version_id,
             verdict.type if verdict.good else "no good match", verdict.z,
             verdict.rlap)
    return new
