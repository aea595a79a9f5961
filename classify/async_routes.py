"""/classify/async: the UWS job list of classifications (run by the job workers)."""

from __future__ import annotations

from datetime import timedelta

from flask import request

from classify.capability import ASYNC_DURATION, RETENTION_DAYS
from classify.service import MAX_UPLOAD
from vo_archive.vo.dali.errors import PayloadTooLarge, UsageFault
from vo_archive.vo.uws.routes import make_uws_blueprint


def inline_parts() -> dict[str, bytes]:
    """Return the uploaded spectrum (a multipart file part) to keep with a job.

    Raises
    ------
    UsageFault
        For more than one file part, or one larger than a spectrum may be.
    """
    if (request.content_length or 0) > MAX_UPLOAD + (1 << 20):
        raise PayloadTooLarge(f"a spectrum may be at most {MAX_UPLOAD >> 20} MiB")
    if len(request.files) > 1:
        raise UsageFault("upload one spectrum per job")
    return {name: f.read() for name, f in request.files.items()}


bp = make_uws_blueprint(
    "classify_async", "classify", default_duration=ASYNC_DURATION,
    max_duration=ASYNC_DURATION * 6, retention=timedelta(days=RETENTION_DAYS),
    max_retention=timedelta(days=RETENTION_DAYS * 4), inline_parts=inline_parts)
