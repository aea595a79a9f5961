"""/classify/async: the UWS job list of classifications (run by the job workers)."""

from __future__ import annotations

from datetime import timedelta

from flask import request

from classify.capability import ASYNC_DURATION, RETENTION_DAYS
from vo_archive.uws.routes import make_uws_blueprint


def inline_parts() -> dict[str, bytes]:
    """Return the uploaded spectrum (the multipart file parts) to keep with a job."""
    return {name: f.read() for name, f in request.files.items()}


bp = make_uws_blueprint(
    "classify_async", "classify", default_duration=ASYNC_DURATION,
    max_duration=ASYNC_DURATION * 6, retention=timedelta(days=RETENTION_DAYS),
    max_retention=timedelta(days=RETENTION_DAYS * 4), inline_parts=inline_parts)
