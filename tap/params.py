"""TAP 1.1 request parameters → :class:`TAPRequest` (no Flask here)."""

from __future__ import annotations

from dataclasses import dataclass

from tap.uploads import UploadSpec, parse_upload
from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.formats import Selected, lookup_format
from vo_archive.vo.dali.params import ParamSet, parse_maxrec

#: LANG values that mean ADQL (TAP 1.1 §2.7.1; taplint E_LVER).
ADQL_LANGS = ("ADQL", "ADQL-2.0", "ADQL-2.1")


@dataclass(frozen=True, slots=True)
class TAPRequest:
    """A checked TAP query request."""

    query: str
    maxrec: int
    output: Selected
    uploads: tuple[UploadSpec, ...]
    runid: str | None = None


def parse_format(params: ParamSet) -> Selected:
    """Return the output format from RESPONSEFORMAT or its synonym FORMAT."""
    value = params.single("RESPONSEFORMAT")
    if value is None:
        value = params.single("FORMAT")
    return lookup_format(value)


def parse_tap(params: ParamSet, maxrec_default: int, maxrec_hard: int) -> TAPRequest:
    """Parse and check the parameters of a TAP query (sync, or an async job's run).

    Raises
    ------
    UsageFault
        On a missing or bad LANG or QUERY, a repeated single-valued parameter,
        an unknown format or a malformed UPLOAD.
    """
    request = params.single("REQUEST")
    if request is not None and request.strip().lower() not in ("", "doquery"):
        raise UsageFault(f"REQUEST={request} is not supported; use doQuery", "REQUEST")
    lang = params.single("LANG")
    if lang is None or lang.strip() == "":
        raise UsageFault("parameter LANG is required (LANG=ADQL)", "LANG")
    if lang.strip().upper() not in ADQL_LANGS:
        raise UsageFault(f"LANG={lang} is not supported; use ADQL", "LANG")
    query = params.required("QUERY")
    output = parse_format(params)
    maxrec = parse_maxrec(params, maxrec_default, maxrec_hard)
    uploads: list[UploadSpec] = []
    for value in params.all("UPLOAD"):
        uploads += parse_upload(value)
    names = [u.name.lower() for u in uploads]
    if len(set(names)) != len(names):
        raise UsageFault("an UPLOAD table name is used twice", "UPLOAD")
    runid = params.single("RUNID")
    return TAPRequest(query, maxrec, output, tuple(uploads),
                      runid[:64] if runid else None)
