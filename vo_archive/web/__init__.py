"""The archive on the web: serving, sign-in, pages, files and uploads.

This module holds the request helpers every blueprint shares (parameters,
base URL, settings, database); its modules are the production server
(``serving``, ``compression``), who is calling (``auth``, ``signin``,
``twin``), the pages (``pages``), single files and previews (``files``,
``previews``), pipeline uploads (``upload``), server-side fetches (``fetch``)
and the OpenAPI description (``openapi``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

from flask import current_app, request
from sqlalchemy import Connection, Engine

from vo_archive.access import Caller, caller_connection, current_caller
from vo_archive.config import Settings
from vo_archive.db.engine import get_engine
from vo_archive.db.readers import read_nodes
from vo_archive.vo.dali.errors import FaultStyle, UsageFault
from vo_archive.vo.dali.params import ParamSet

T = TypeVar("T")


def settings() -> Settings:
    """Return the archive settings of the running app."""
    s = current_app.config["ARCHIVE_SETTINGS"]
    if not isinstance(s, Settings):
        raise AssertionError("the app was made without archive settings")
    return s


def engine(pre_ping: bool = True) -> Engine:
    """Return the database engine of this worker process.

    See :func:`vo_archive.db.engine.get_engine` for ``pre_ping``.
    """
    return get_engine(settings(), pre_ping)


def read(work: Callable[[Engine], T], pre_ping: bool = True) -> T:
    """Do read-only work on a healthy standby, or on the primary.

    ``work`` gets the engine of the chosen node; when that node cannot be
    reached, it is called again with the next one (the primary last), so it
    must not have sent anything to the client yet. Without configured standbys
    it runs once on :func:`engine`. See :mod:`vo_archive.db.readers`.
    """
    return read_nodes(settings()).run(work, pre_ping)


def read_engine(pre_ping: bool = True) -> Engine:
    """Return the engine of the node the next read should use (no retry)."""
    return read_nodes(settings()).engine(pre_ping)


@contextlib.contextmanager
def reading(caller: Caller | None = None) -> Iterator[Connection]:
    """Open a read-only request's transaction, scoped to the caller, on a standby.

    Like :func:`vo_archive.access.caller_connection` on :func:`engine`, but on
    a healthy standby (the primary when there is none); a node that cannot be
    reached is passed over before the block runs. A page that must see its
    own writes (an upload's result) uses ``caller_connection(engine())``.
    """
    with contextlib.ExitStack() as stack:
        yield read(lambda eng: stack.enter_context(caller_connection(eng, caller)))


def params() -> ParamSet:
    """Return the request's parameters (query string and form, GET or POST).

    Multipart file parts are not included; uploads read ``request.files``.

    Raises
    ------
    UsageFault
        If the request body cannot be decoded or a multipart part has no name.
    """
    try:
        items = list(request.args.items(multi=True))
        if request.method == "POST":
            form = list(request.form.items(multi=True))
            # werkzeug keeps a multipart part without a name under the key None
            if any(name is None for name, _ in form) or None in request.files:
                raise UsageFault("a multipart part has no name (its "
                                 "Content-Disposition needs name=\"...\")")
            items += form
    except UnicodeDecodeError as exc:
        raise UsageFault("request parameters are not valid UTF-8") from exc
    return ParamSet(items)


#: Path prefix of the authenticated twin of every service (see vo_archive.web.twin).
TWIN_PREFIX = "/auth"
#: WSGI environ key marking a request that came in through the twin.
TWIN_KEY = "vo_archive.auth_twin"


def in_twin() -> bool:
    """Return whether the request came in through the authenticated twin."""
    return bool(request.environ.get(TWIN_KEY))


def public_base_url() -> str:
    """Return the external base URL of the archive, without a trailing slash.

    The configured ``base_url`` wins (for an archive behind a proxy); otherwise
    the URL the request came in on, honouring X-Forwarded-* only when configured.
    """
    configured = settings().base_url
    if configured:
        return configured.rstrip("/")
    return request.host_url.rstrip("/")


def base_url() -> str:
    """Return the base URL the URLs of this answer are made from.

    That is :func:`public_base_url`, with the twin's ``/auth`` for a request
    that came through the twin or carries credentials: every URL an
    authenticated caller is given (access URLs, DataLink, previews, jobs) lives
    under the twin, where clients that only answer a 401 are asked for
    credentials, and which the capabilities declare as authenticated.
    """
    base = public_base_url()
    if in_twin() or not current_caller().anonymous:
        return base + TWIN_PREFIX
    return base


def twin_absolute(path: str) -> str:
    """Return the absolute URL of an archive path in the authenticated twin."""
    return public_base_url() + TWIN_PREFIX + "/" + path.lstrip("/")


def absolute(path: str) -> str:
    """Return the absolute external URL of an archive path."""
    return url_maker()(path)


def url_maker() -> Callable[[str], str]:
    """Return a function making archive paths absolute for this request.

    The base URL is looked up once: a result's rows each carry URLs.
    """
    base = base_url() + "/"

    def make(path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return base + path.lstrip("/")

    return make


#: Fault style of each blueprint, by blueprint name (see vo_archive.vo.dali.errors).
FAULT_STYLES: dict[str, FaultStyle] = {}


def set_fault_style(blueprint_name: str, style: FaultStyle) -> None:
    """Declare how faults raised under a blueprint are written."""
    FAULT_STYLES[blueprint_name] = style


def fault_style() -> FaultStyle:
    """Return the fault style of the current request's blueprint."""
    return FAULT_STYLES.get(request.blueprint or "", FaultStyle.TEXT)
