"""Classify a spectrum for a service and write the answer (no Flask).

Shared by ``/classify/sync``, the UWS jobs of ``/classify/async`` and the
arrival task of the job workers: read an archived or uploaded spectrum, run the
classifier with the configured template library, and write the verdict as a
VOTable (the matches as rows, the verdict as PARAMs) or as JSON. Mistakes of
the caller (not a spectrum, no overlap with the templates) become
:class:`~vo_archive.vo.dali.errors.UsageFault`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from classify.capability import STANDARD_ID
from classify.core import ClassifyOptions, Verdict, classify_spectrum, verdict_to_dict
from classify.params import ResponseFormat
from classify.spectrum import Spectrum, SpectrumError, read_spectrum
from classify.storage import (
    MATCH_KEYS,
    StoredClassification,
    find_spectrum,
    parse_identifier,
)
from classify.templates import TemplateError, TemplateLibrary, configured_library
from vo_archive.config import Settings
from vo_archive.ingest.storage import Storage
from vo_archive.vo.dal import publisher_did
from vo_archive.vo.dali.errors import FatalFault, UsageFault
from vo_archive.vo.votable import Field, Info, Param, TableDocument, stream_votable

#: Largest spectrum accepted for upload (a 1D spectrum is a few hundred KiB).
MAX_UPLOAD = 20 << 20

MATCH_FIELDS: tuple[Field, ...] = (
    Field("rank", "int", ucd="meta.number", description="Rank of the match (1 = best)"),
    Field("template", "char", "*", ucd="meta.id",
          description="Template (supernova) of the match"),
    Field("sn_type", "char", "*", ucd="src.class", description="Type of the template"),
    Field("sn_subtype", "char", "*", ucd="src.class",
          description="Subtype of the template"),
    Field("phase", "double", unit="d", ucd="time.phase",
          description="Age of the template epoch: days from maximum"),
    Field("redshift", "double", ucd="src.redshift",
          description="Redshift of the correlation peak"),
    Field("redshift_err", "double", ucd="stat.error;src.redshift",
          description="Error of the redshift (from the peak width)"),
    Field("r", "double", ucd="stat.correlation",
          description="Tonry-Davis r: peak height over the antisymmetric noise"),
    Field("lap", "double", ucd="stat.value",
          description="Overlap in ln(wavelength) of spectrum and template"),
    Field("rlap", "double", ucd="stat.correlation", description="r times lap"),
    Field("good", "boolean", ucd="meta.code.qual",
          description="Whether the match passes the rlap and overlap thresholds"),
)


def library(settings: Settings) -> TemplateLibrary:
    """Return the configured template library, read once per process.

    ``[classify] templates`` or ``VO_ARCHIVE_CLASSIFY_TEMPLATES``, else the
    library shipped with the archive.

    Raises
    ------
    FatalFault
        If the configured library cannot be read.
    """
    try:
        return configured_library(settings.extra)
    except TemplateError as exc:
        raise FatalFault(f"the template library cannot be read: {exc}") from exc


def read_uploaded(data: bytes, name: str | None = None) -> Spectrum:
    """Read an uploaded spectrum.

    Raises
    ------
    UsageFault
        If it is too large, or not a 1D spectrum.
    """
    if len(data) > MAX_UPLOAD:
        raise UsageFault(f"the uploaded spectrum is larger than {MAX_UPLOAD >> 20} MiB")
    try:
        return read_spectrum(data, name or "upload")
    except SpectrumError as exc:
        raise UsageFault(f"not a spectrum that can be classified: {exc}") from exc


def read_archived(path: Path, name: str) -> Spectrum:
    """Read an archived spectrum.

    Raises
    ------
    UsageFault
        If the file holds no 1D spectrum the classifier can read.
    """
    try:
        return read_spectrum(path, name)
    except SpectrumError as exc:
        raise UsageFault(f"{name} cannot be classified: {exc}") from exc


def run_classifier(spectrum: Spectrum, options: ClassifyOptions,
                   templates: TemplateLibrary) -> Verdict:
    """Classify a spectrum.

    Raises
    ------
    UsageFault
        If the spectrum does not overlap the templates enough (or the options
        leave nothing to compare with).
    """
    try:
        return classify_spectrum(spectrum, options, templates)
    except SpectrumError as exc:
        raise UsageFault(f"the spectrum cannot be classified: {exc}") from exc


def _num(x: float | None) -> str:
    return "NaN" if x is None or not math.isfinite(x) else repr(float(x))


def _param(name: str, datatype: str, value: str, ucd: str, description: str,
           unit: str | None = None) -> Param:
    arraysize = "*" if datatype == "char" else None
    return Param(Field(name, datatype, arraysize, unit, ucd,
                       description=description), value)


def _params(source: str, good: bool, sn_type: str | None, subtype: str | None,
            fraction: float | None, z: float | None, z_err: float | None,
            age: float | None, age_err: float | None, rlap: float | None,
            classifier_version: str, library_version: str) -> list[Param]:
    return [
        _param("ID", "char", source, "meta.id;meta.main",
               "The classified spectrum (dataset identifier or file name)"),
        _param("good", "boolean", "T" if good else "F", "meta.code.qual",
               "Whether any template matched above the rlap threshold; when not, "
               "the spectrum has no classification"),
        _param("sn_type", "char", (sn_type or "") if good else "", "src.class",
               "Type: the type with the largest share of the best good matches"),
        _param("sn_subtype", "char", (subtype or "") if good else "", "src.class",
               "Subtype within the type"),
        _param("fraction", "double", _num(fraction if good else None),
               "stat.value", "Share of the best good matches that are of the type"),
        _param("redshift", "double", _num(z), "src.redshift",
               "Redshift from the good matches of the type"),
        _param("redshift_err", "double", _num(z_err), "stat.error;src.redshift",
               "Error of the redshift"),
        _param("age", "double", _num(age), "time.phase",
               "Age: days from maximum light", "d"),
        _param("age_err", "double", _num(age_err), "stat.error;time.phase",
               "Error of the age", "d"),
        _param("rlap", "double", _num(rlap), "stat.correlation",
               "rlap of the best match"),
        _param("classifier_version", "char", classifier_version, "meta.version",
               "Version of the classifier"),
        _param("library_version", "char", library_version, "meta.version",
               "Version of the template library"),
    ]


def _document(params: list[Param], rows: list[list[Any]], good: bool,
              extra: list[Info] | None = None) -> bytes:
    infos = [Info("QUERY_STATUS", "OK"), Info("standardID", STANDARD_ID),
             *(extra or [])]
    if not good:
        infos.append(Info("verdict", "no good match",
                          "No template matched above the rlap threshold: the "
                          "spectrum is not classified"))
    doc = TableDocument(MATCH_FIELDS, infos, params, table_name="matches",
                        description="Best template matches, best first")
    return b"".join(stream_votable(doc, rows, None))


def match_rows(v: Verdict) -> list[list[Any]]:
    """Return the matches as rows of :data:`MATCH_FIELDS`, best first."""
    return [[n, m.template, m.type, m.subtype, m.phase, m.z, m.z_err, m.r, m.lap,
             m.rlap, m.good] for n, m in enumerate(v.matches, 1)]


def votable_document(v: Verdict, source: str) -> bytes:
    """Return the classification as a VOTable: matches as rows, verdict as PARAMs."""
    params = _params(source, v.good, v.type, v.subtype, v.fraction, v.z, v.z_err,
                     v.age, v.age_err, v.rlap, v.classifier_version,
                     v.library_version)
    return _document(params, match_rows(v), v.good)


def json_document(v: Verdict, source: str) -> bytes:
    """Return the classification as JSON (no NaN: null)."""
    out: dict[str, Any] = {"id": source, **verdict_to_dict(v)}
    if not v.good:
        out["type"] = out["subtype"] = out["fraction"] = None
    return json.dumps(out, allow_nan=False).encode() + b"\n"


def result_document(v: Verdict, source: str, fmt: ResponseFormat) -> bytes:
    """Return the classification in the requested format."""
    if fmt is ResponseFormat.JSON:
        return json_document(v, source)
    return votable_document(v, source)


def stored_document(c: StoredClassification, fmt: ResponseFormat) -> bytes:
    """Return a stored classification in the format of a fresh one."""
    if fmt is ResponseFormat.JSON:
        out = {"id": c.publisher_did, "classification_id": c.classification_id,
               "type": c.sn_type, "subtype": c.sn_subtype, "fraction": c.fraction,
               "z": c.redshift, "z_err": c.redshift_err, "age": c.age,
               "age_err": c.age_err, "rlap": c.rlap, "good": c.good,
               "problem": c.problem, "matches": list(c.matches),
               "classifier_version": c.classifier_version,
               "library_version": c.library_version,
               "classified_at": c.classified_at.isoformat()}
        return json.dumps(out, allow_nan=False).encode() + b"\n"
    params = _params(c.publisher_did, c.good, c.sn_type, c.sn_subtype, c.fraction,
                     c.redshift, c.redshift_err, c.age, c.age_err, c.rlap,
                     c.classifier_version, c.library_version)
    rows = [[n, *(m.get(k) for k in MATCH_KEYS)] for n, m in enumerate(c.matches, 1)]
    extra = [Info("classified_at", c.classified_at.isoformat())]
    if c.problem:
        extra.append(Info("problem", c.problem))
    return _document(params, rows, c.good, extra)


def archived_spectrum(conn: Connection, ident: str, settings: Settings
                      ) -> tuple[Spectrum, str]:
    """Read the archived spectrum named by ``ident``; return it with its DID.

    ``conn`` must be scoped to the caller: a spectrum the caller may not see is
    not found.

    Raises
    ------
    NotFoundFault
        If there is no such product, or the caller may not see it.
    UsageFault
        If ``ident`` is malformed or the product is not a readable 1D spectrum.
    """
    pid, vno = parse_identifier(ident, settings.publisher_authority)
    found = find_spectrum(conn, pid, vno)
    path = Storage(settings.storage_dir).path_of(found.storage_key)
    did = publisher_did(settings.publisher_authority, found.product_id,
                        found.version_no)
    return read_archived(path, found.filename), did
