"""Pipeline uploads: ``POST /upload`` (multipart) and ``PUT /upload/<filename>``.

The reduction pipeline at the telescope pushes its products here. Callers need
the role ``reducer`` (or ``admin``). Every file goes through
:meth:`vo_archive.ingest.pipeline.Ingestor.ingest_bytes`, the code the CLI
ingest uses, with the same checks, versioning and crash-safe journal; the answer
is a JSON document with one result per file (``new``, ``new_version``,
``unchanged`` or ``rejected`` with the reason). Bodies over ``[limits]
max_request_bytes`` get 413 before anything is ingested. A storage that takes no
more files (full, over quota, read-only) gets 507 Insufficient Storage, with
the files archived before it kept; an unavailable database gets 503.

- ``POST /upload``: ``multipart/form-data`` with one or more file parts (any
  field name; the part's file name is the archived name). 200 with the results.
- ``PUT /upload/<filename>``: the file as the raw body. 201 with ``Location``
  for a new product or version, 200 when unchanged, 422 when rejected.

Errors are ``text/plain`` starting with the fault name.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Iterable
from typing import Any

import psycopg2
from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from vo_archive import web
from vo_archive.access import Caller
from vo_archive.db.outage import database_unavailable
from vo_archive.ingest.pipeline import FileResult, Ingestor, Outcome
from vo_archive.ingest.storage import StorageFull
from vo_archive.vo.dali.errors import (
    AuthorizationFault,
    FaultStyle,
    InsufficientStorage,
    TransientFault,
    UsageFault,
)
from vo_archive.web.auth import UPLOAD_ROLES, require_roles, session_csrf

log = logging.getLogger(__name__)

bp = Blueprint("upload", __name__)
web.set_fault_style(bp.name, FaultStyle.TEXT)

#: Names the archive stores files under: no folders, no hidden files.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}\Z")
#: At most this many files in one multipart upload.
MAX_FILES = 1000
#: Seconds a pipeline is asked to wait when the storage is full (an operator
#: has to make room).
STORAGE_RETRY_AFTER_S = 600


def _result_json(r: FileResult, size: int) -> dict[str, Any]:
    out: dict[str, Any] = {"filename": r.source, "size": size,
                           "outcome": r.outcome.value}
    if r.reason:
        out["reason"] = r.reason
    if r.product_id is not None:
        out.update(product_id=r.product_id, version_no=r.version_no,
                   is_current=r.is_current,
                   url=web.absolute(f"/products/{r.product_id}/versions/{r.version_no}"))
    return out


def _log_upload(engine: Engine, caller: Caller, r: FileResult, size: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO archive.upload_log (account, remote_addr, filename, "
            "file_size, outcome, reason, product_id, version_no) "
            "VALUES (:a, :addr, :f, :s, :o, :r, :p, :v)"),
            # PostgreSQL text cannot hold NUL, which a hostile file name may
            {"a": caller.name, "addr": request.remote_addr,
             "f": r.source.replace("\x00", "\ufffd"), "s": size,
             "o": r.outcome.value, "r": r.reason, "p": r.product_id,
             "v": r.version_no})
    log.info("upload by %s of %s (%d bytes): %s%s [%s]", caller.name, r.source, size,
             r.outcome.value, f" ({r.reason})" if r.reason else "", g.get("request_id"))


def read_body(stream: Any) -> bytes:
    """Read a file part or body to its end.

    Reading on after the end is what makes werkzeug's size limit raise 413 on a
    chunked body; a single ``read()`` would stop at the limit without a word.
    """
    chunks = []
    while chunk := stream.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def ingest_uploads(caller: Caller, files: Iterable[tuple[str, Any]]
                   ) -> list[dict[str, Any]]:
    """Ingest (name, readable) pairs one by one; return their JSON results.

    Each file is read into memory only while it is ingested.

    Raises
    ------
    TransientFault
        If the database cannot be reached (:mod:`vo_archive.db.outage`).
    InsufficientStorage
        If the archive's storage takes no more files.
    """
    engine = web.engine()
    results: list[dict[str, Any]] = []
    try:
        with Ingestor(web.settings(), engine, workers=1) as ing:
            for name, stream in files:
                data = read_body(stream)
                if not SAFE_NAME.match(name or ""):
                    r = FileResult(name or "", Outcome.REJECTED,
                                   "unsafe file name: use letters, digits and ._+- "
                                   "(no folders), at most 200 characters")
                else:
                    r = ing.ingest_bytes(name, data)
                _log_upload(engine, caller, r, len(data))
                results.append(_result_json(r, len(data)))
    except (SQLAlchemyError, psycopg2.Error) as exc:
        if not database_unavailable(exc):
            raise
        log.error("upload failed: %s [%s]", exc, g.get("request_id"))
        raise TransientFault("the archive database is unavailable; nothing more "
                             "was ingested, retry the upload") from None
    except StorageFull as full:
        log.error("upload stopped after %d files: %s [%s]", len(results), full,
                  g.get("request_id"))
        raise InsufficientStorage(
            f"the archive's storage folder takes no more files: {full.reason} "
            f"({full.free}); {len(results)} earlier file(s) of this upload were "
            "archived, nothing more was: retry the upload when there is room",
            retry_after=STORAGE_RETRY_AFTER_S) from None
    return results


def check_page_csrf() -> None:
    """Refuse an upload authenticated by the session cookie without its CSRF token.

    The upload page sends the token of the signed-in session in the
    ``X-CSRF-Token`` header; scripts that send ``Authorization`` need none.

    Raises
    ------
    AuthorizationFault
        403 when the token is missing or wrong.
    """
    if g.get("auth_scheme") != "cookie":
        return
    sent = request.headers.get("X-CSRF-Token", "")
    if not hmac.compare_digest(sent, session_csrf(g.session_value)):
        raise AuthorizationFault("an upload from the page needs the page's CSRF "
                                 "token (X-CSRF-Token)")


def _summary(results: list[dict[str, Any]]) -> dict[str, int]:
    counts = {o.value: 0 for o in Outcome}
    for r in results:
        counts[r["outcome"]] += 1
    return counts


@bp.post("/upload")
def upload_many() -> Response:
    """Ingest the file parts of a multipart POST."""
    caller = require_roles(UPLOAD_ROLES, "uploading products")
    check_page_csrf()
    if request.mimetype != "multipart/form-data":
        raise UsageFault("POST /upload takes multipart/form-data with file parts; "
                         "PUT /upload/<filename> takes one file as the body")
    parts = list(request.files.items(multi=True))
    if not parts:
        raise UsageFault("no file parts in the upload")
    if len(parts) > MAX_FILES:
        raise UsageFault(f"at most {MAX_FILES} files per upload")
    results = ingest_uploads(caller, ((fs.filename or "", fs.stream)
                                      for _, fs in parts))
    return jsonify(uploaded_by=caller.name, files=results, summary=_summary(results))


@bp.put("/upload/<path:filename>")
def upload_one(filename: str) -> Response:
    """Ingest one file sent as the raw body."""
    caller = require_roles(UPLOAD_ROLES, "uploading products")
    check_page_csrf()
    if not SAFE_NAME.match(filename):
        raise UsageFault("unsafe file name: use letters, digits and ._+- (no "
                         "folders), at most 200 characters")
    results = ingest_uploads(caller, [(filename, request.stream)])
    r = results[0]
    resp = jsonify(uploaded_by=caller.name, files=results, summary=_summary(results))
    if r["outcome"] in (Outcome.NEW.value, Outcome.NEW_VERSION.value):
        resp.status_code = 201
        resp.headers["Location"] = r["url"]
    elif r["outcome"] == Outcome.REJECTED.value:
        resp.status_code = 422
    return resp
