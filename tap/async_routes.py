"""/tap/async: the TAP UWS job list (jobs run by ``vo-archive worker``)."""

from __future__ import annotations

from datetime import timedelta

from tap.capability import ASYNC_DURATION, RETENTION_DAYS
from tap.routes import inline_parts
from vo_archive.vo.uws.routes import make_uws_blueprint

bp = make_uws_blueprint(
    "tap_async", "tap", default_duration=ASYNC_DURATION,
    max_duration=ASYNC_DURATION * 4, retention=timedelta(days=RETENTION_DAYS),
    max_retention=timedelta(days=RETENTION_DAYS * 4), inline_parts=inline_parts)
