"""Classifications in PostgreSQL: which spectra to classify, store and read verdicts.

The table is ``archive.classification`` (migration ``0010_classification``):
one row per file, classifier version and template-library version, never
updated. Reading for a caller goes through the published view
``pessto.classifications``, which applies the access rule of the spectrum.
Nothing here imports Flask.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from classify.core import Verdict
from vo_archive.vo.dal import parse_publisher_did
from vo_archive.vo.dali.errors import NotFoundFault, UsageFault

#: Product types the classifier reads (1D spectra); see archive.classifiable().
SPECTRUM_TYPES = ("fluxcal_1d", "telluric_corrected_1d", "extracted_1d")
#: The arrival task: procrastinate task name and queue (the job workers' queue).
TASK = "classify.version"
QUEUE = "uws"
#: Arrival classifications run after interactive jobs (higher runs first).
PRIORITY = -1
MATCH_KEYS = ("template", "type", "subtype", "phase", "z", "z_err", "r", "lap",
              "rlap", "good")


@dataclass(frozen=True, slots=True)
class Spectrum1D:
    """An archived file to classify: where it is and what it is."""

    version_id: int
    product_id: int
    version_no: int
    filename: str
    storage_key: str
    product_type: str
    mode: str


@dataclass(frozen=True, slots=True)
class StoredClassification:
    """A stored verdict as the caller may see it (``pessto.classifications``)."""

    classification_id: int
    product_id: int
    version_id: int
    version_no: int
    publisher_did: str
    classifier_version: str
    library_version: str
    sn_type: str | None
    sn_subtype: str | None
    fraction: float | None
    redshift: float | None
    redshift_err: float | None
    age: float | None
    age_err: float | None
    rlap: float | None
    good: bool
    problem: str | None
    classified_at: datetime
    is_latest: bool
    matches: tuple[dict[str, Any], ...]


def _finite(x: object) -> float | None:
    """Return a float, or None for a missing or non-finite value (JSON/SQL NULL)."""
    if x is None:
        return None
    f = float(x)  # type: ignore[arg-type]
    return f if f == f and f not in (float("inf"), float("-inf")) else None


def match_dicts(verdict: Verdict) -> list[dict[str, Any]]:
    """Return the verdict's matches as plain dictionaries (best first)."""
    out = []
    for m in verdict.matches:
        d: dict[str, Any] = {}
        for k in MATCH_KEYS:
            v = getattr(m, k)
            d[k] = v if isinstance(v, str | bool) or v is None else _finite(v)
        out.append(d)
    return out


def parse_identifier(ident: str, authority: str) -> tuple[int, int | None]:
    """Return (product id, version number or None for the current one).

    ``ident`` is a publisher DID (``ivo://.../pessto?123/v2``) or a product id.

    Raises
    ------
    UsageFault
        If it is neither.
    """
    s = ident.strip()
    if s.isdigit() and 0 < int(s) < 1 << 63:
        return int(s), None
    ids = parse_publisher_did(s, authority)
    if ids is None or not (0 < ids[0] < 1 << 63 and 0 < ids[1] < 1 << 31):
        raise UsageFault(f"parameter ID: {ident!r} is neither a product id nor a "
                         "dataset identifier of this archive", "ID")
    return ids


def find_spectrum(conn: Connection, product_id: int, version_no: int | None
                  ) -> Spectrum1D:
    """Return a visible version of a product, which must be a 1D spectrum.

    ``conn`` must be scoped to the caller (:func:`vo_archive.access.caller_connection`).

    Raises
    ------
    NotFoundFault
        If there is no such version, or the caller may not see it.
    UsageFault
        If the product is not a 1D spectrum.
    """
    row = conn.execute(text(
        "SELECT v.version_id, v.product_id, v.version_no, v.filename, v.storage_key, "
        "p.product_type, p.mode FROM archive.version v "
        "JOIN archive.product p USING (product_id) "
        "WHERE v.product_id = :pid AND archive.visible(p.release_date) AND "
        "CASE WHEN CAST(:vno AS integer) IS NULL THEN v.is_current "
        "ELSE v.version_no = :vno END"), {"pid": product_id, "vno": version_no}).first()
    if row is None:
        what = (f"version {version_no} of product {product_id}" if version_no
                else f"product {product_id}")
        raise NotFoundFault(f"no {what} (or it is not public)")
    found = Spectrum1D(*row)
    if found.mode != "spectroscopy" or found.product_type not in SPECTRUM_TYPES:
        raise UsageFault(f"product {product_id} ({found.filename}) is not a 1D "
                         f"spectrum but a {found.product_type}", "ID")
    return found


def version_to_classify(conn: Connection, version_id: int) -> Spectrum1D | None:
    """Return an archived file by version id, for the workers (no access scope)."""
    row = conn.execute(text(
        "SELECT v.version_id, v.product_id, v.version_no, v.filename, v.storage_key, "
        "p.product_type, p.mode FROM archive.version v "
        "JOIN archive.product p USING (product_id) WHERE v.version_id = :id"),
        {"id": version_id}).first()
    return Spectrum1D(*row) if row is not None else None


def store_verdict(conn: Connection, version_id: int, verdict: Verdict) -> int | None:
    """Store a verdict; return its id, or None when that file already has one.

    The classifier and library versions are part of the key: a new version of
    either adds a row.
    """
    return conn.execute(text(
        "INSERT INTO archive.classification (version_id, classifier_version, "
        "library_version, sn_type, sn_subtype, fraction, redshift, redshift_err, "
        "age, age_err, rlap, good, matches) VALUES (:vid, :cv, :lv, :t, :st, :f, "
        ":z, :ze, :a, :ae, :r, :good, CAST(:m AS jsonb)) "
        "ON CONFLICT (version_id, classifier_version, library_version) DO NOTHING "
        "RETURNING classification_id"), {
            "vid": version_id, "cv": verdict.classifier_version,
            "lv": verdict.library_version,
            "t": verdict.type if verdict.good else None,
            "st": verdict.subtype if verdict.good else None,
            "f": _finite(verdict.fraction) if verdict.good else None,
            "z": _finite(verdict.z), "ze": _finite(verdict.z_err),
            "a": _finite(verdict.age), "ae": _finite(verdict.age_err),
            "r": _finite(verdict.rlap), "good": bool(verdict.good),
            "m": json.dumps(match_dicts(verdict))}).scalar()


def store_problem(conn: Connection, version_id: int, classifier_version: str,
                  library_version: str, problem: str) -> int | None:
    """Record that a file could not be classified (not readable as a spectrum)."""
    return conn.execute(text(
        "INSERT INTO archive.classification (version_id, classifier_version, "
        "library_version, good, problem) VALUES (:vid, :cv, :lv, false, :p) "
        "ON CONFLICT (version_id, classifier_version, library_version) DO NOTHING "
        "RETURNING classification_id"), {
            "vid": version_id, "cv": classifier_version, "lv": library_version,
            "p": problem}).scalar()


def claim_queued(conn: Connection, limit: int) -> list[tuple[int, int]]:
    """Lock up to ``limit`` queued arrival tasks; return (job id, version id) pairs.

    The rows are locked ``FOR UPDATE SKIP LOCKED`` in the caller's transaction,
    as procrastinate's own fetch locks them, so no other worker takes them
    meanwhile; the caller removes them with :func:`drop_queued` in the same
    transaction as it stores their verdicts. Should the transaction roll back
    (the worker dies), they are queued as before. Tasks run again after a
    lost worker (``attempts`` > 0) are left to run alone.
    """
    if limit <= 0:
        return []
    rows = conn.execute(text(
        "SELECT id, (args ->> 'version_id')::bigint FROM "
        "procrastinate.procrastinate_jobs WHERE queue_name = :queue AND "
        "task_name = :task AND status = 'todo' AND lock IS NULL AND attempts = 0 AND "
        "(scheduled_at IS NULL OR scheduled_at <= now()) AND "
        "jsonb_typeof(args -> 'version_id') = 'number' "
        "ORDER BY priority DESC, id LIMIT :n FOR UPDATE SKIP LOCKED"),
        {"queue": QUEUE, "task": TASK, "n": limit}).all()
    return [(int(r[0]), int(r[1])) for r in rows]


def drop_queued(conn: Connection, job_ids: Sequence[int]) -> None:
    """Remove claimed arrival tasks from the queue (procrastinate's cancel)."""
    if job_ids:
        conn.execute(text(
            "SELECT procrastinate.procrastinate_cancel_job_v1(id, false, true) "
            "FROM unnest(CAST(:ids AS bigint[])) AS id"), {"ids": list(job_ids)})


def versions_to_classify(conn: Connection, version_ids: Sequence[int],
                         classifier_version: str, library_version: str
                         ) -> dict[int, Spectrum1D]:
    """Return the files among ``version_ids`` that still want this verdict.

    Files that are gone, or already have a verdict of these classifier and
    library versions, are left out (for the workers: no access scope).
    """
    if not version_ids:
        return {}
    rows = conn.execute(text(
        "SELECT v.version_id, v.product_id, v.version_no, v.filename, v.storage_key, "
        "p.product_type, p.mode FROM archive.version v "
        "JOIN archive.product p USING (product_id) WHERE v.version_id = ANY(:ids) "
        "AND NOT EXISTS (SELECT 1 FROM archive.classification c WHERE "
        "c.version_id = v.version_id AND c.classifier_version = :cv AND "
        "c.library_version = :lv)"),
        {"ids": list(version_ids), "cv": classifier_version,
         "lv": library_version}).all()
    return {r[0]: Spectrum1D(*r) for r in rows}


def is_classified(conn: Connection, version_id: int, classifier_version: str,
                  library_version: str) -> bool:
    """Whether a file has a verdict of this classifier and library version."""
    return conn.execute(text(
        "SELECT 1 FROM archive.classification WHERE version_id = :v AND "
        "classifier_version = :cv AND library_version = :lv"),
        {"v": version_id, "cv": classifier_version, "lv": library_version}
    ).first() is not None


_STORED_COLUMNS = (
    "c.classification_id, c.product_id, c.version_id, c.version_no, "
    "c.publisher_did, c.classifier_version, c.library_version, c.sn_type, "
    "c.sn_subtype, c.fraction, c.redshift, c.redshift_err, c.age, c.age_err, "
    "c.rlap, c.good, c.problem, c.classified_at, c.is_latest, a.matches")


def stored_classifications(conn: Connection, product_id: int, version_no: int | None,
                           latest_only: bool = False) -> list[StoredClassification]:
    """Return the classifications of a version the caller may see, newest first.

    Read through ``pessto.classifications`` (the access rule of the spectrum);
    ``conn`` must be scoped to the caller.
    """
    rows = conn.execute(text(
        f"SELECT {_STORED_COLUMNS} FROM pessto.classifications c "  # noqa: S608 - constant
        "JOIN archive.classification a USING (classification_id) "
        "WHERE c.product_id = :pid AND CASE WHEN CAST(:vno AS integer) IS NULL "
        "THEN c.is_current ELSE c.version_no = :vno END "
        "AND (c.is_latest OR NOT :latest) ORDER BY c.classification_id DESC"),
        {"pid": product_id, "vno": version_no, "latest": latest_only}).all()
    out = []
    for r in rows:
        m = dict(r._mapping)
        m["matches"] = tuple(m["matches"])
        out.append(StoredClassification(**m))
    return out


def classified_versions(conn: Connection, version_ids: Sequence[int]) -> set[int]:
    """Return which of the visible versions have a stored classification."""
    if not version_ids:
        return set()
    rows = conn.execute(text(
        "SELECT DISTINCT version_id FROM pessto.classifications "
        "WHERE version_id = ANY(:ids)"), {"ids": list(version_ids)}).all()
    return {r[0] for r in rows}


def enqueue_versions(conn: Connection, version_ids: Sequence[int]) -> int:
    """Queue files for the arrival task as the ingest trigger does; return the count."""
    if not version_ids:
        return 0
    conn.execute(text(
        "SELECT procrastinate.procrastinate_defer_jobs_v1(array_agg(ROW(:queue, "
        ":task, :prio, NULL, NULL, jsonb_build_object('version_id', v), NULL)::"
        "procrastinate.procrastinate_job_to_defer_v1)) FROM unnest(:ids) AS v"),
        {"queue": QUEUE, "task": TASK, "prio": PRIORITY, "ids": list(version_ids)})
    return len(version_ids)


def unclassified_versions(conn: Connection, classifier_version: str,
                          library_version: str, current_only: bool = True
                          ) -> list[int]:
    """Return the classifiable files without a verdict of these versions."""
    rows = conn.execute(text(
        "SELECT v.version_id FROM archive.version v "
        "JOIN archive.product p USING (product_id) "
        "WHERE archive.classifiable(p.mode, p.category, p.level, p.product_type) "
        "AND (v.is_current OR NOT :cur) AND NOT EXISTS (SELECT 1 FROM "
        "archive.classification c WHERE c.version_id = v.version_id AND "
        "c.classifier_version = :cv AND c.library_version = :lv) "
        "ORDER BY v.version_id"),
        {"cur": current_only, "cv": classifier_version, "lv": library_version}).all()
    return [r[0] for r in rows]
