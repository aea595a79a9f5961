"""The Flask application factory."""

from __future__ import annotations

import importlib
import logging
import re
import uuid
from typing import Any

from flask import Flask, Response, g, render_template, request
from sqlalchemy import text
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from vo_archive import __version__, web
from vo_archive.config import Settings, load_settings
from vo_archive.db.outage import database_unavailable, unavailable_fault
from vo_archive.vo.dali.errors import (
    FatalFault,
    Fault,
    UsageFault,
    render_fault,
)
from vo_archive.web.auth import load_caller
from vo_archive.web.compression import GzipMiddleware
from vo_archive.web.twin import AuthTwin, protect_response

log = logging.getLogger(__name__)

#: Blueprints of the archive: (module exporting ``bp``, URL prefix).
BLUEPRINTS: tuple[tuple[str, str], ...] = (
    ("vo_archive.web.files", ""),
    ("vo_archive.retrieval", ""),
    ("conesearch", "/scs"),
    ("siap.sia2", "/sia2"),
    ("ssap", "/ssap"),
    ("siap", "/siap"),
    ("vo_archive.web.previews", ""),
    ("vo_archive.vo.datalink", "/datalink"),
    ("soda", "/soda"),
    ("vo_archive.vo.moc", ""),
    ("tap", "/tap"),
    ("tap.async_routes", "/tap/async"),
    ("classify", "/classify"),
    ("classify.async_routes", "/classify/async"),
    ("classify.stats_routes", ""),
    ("vo_archive.web.upload", ""),
    ("vo_archive.web.openapi", ""),
    ("vo_archive.vo.oai", ""),
    ("vo_archive.web.signin", ""),
    ("vo_archive.web.pages", ""),
)

_SLASHES = re.compile(r"/{2,}")
SERVER_HEADER = f"vo-archive/{__version__} (PESSTO archive; VO server)"
CORS_PREFIXES = ("/scs", "/siap", "/sia2", "/ssap", "/tap", "/datalink", "/moc",
                 "/products", "/classify", "/soda")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web application.

    Parameters
    ----------
    settings
        Archive settings; read from the configuration file and environment when
        None.
    """
    settings = settings or load_settings()
    app = Flask("vo_archive")
    app.config["ARCHIVE_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = int(
        settings.extra.get("limits", {}).get("max_request_bytes", 512 << 20)
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    for module, prefix in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(module).bp, url_prefix=prefix)

    app.before_request(_before)
    app.before_request(load_caller)
    app.after_request(_after)
    app.after_request(protect_response)
    app.wsgi_app = AuthTwin(app.wsgi_app)  # type: ignore[method-assign]
    app.register_error_handler(Fault, _handle_fault)
    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(Exception, _handle_unexpected)
    app.add_url_rule("/", "landing", landing)
    app.wsgi_app = GzipMiddleware(  # type: ignore[method-assign]
        _PathNormaliser(app.wsgi_app))
    if settings.trusted_proxies > 0:
        # behind nginx (README "Running on more than one host"): the client's
        # address and the URL it asked for, as the trusted proxies saw them
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)
    return app


class _PathNormaliser:
    """Serve ``/tap/`` as ``/tap`` and ``/tap//sync`` as ``/tap/sync``.

    Clients given a base URL with a trailing slash append their own paths to it
    (STILTS ``tapurl=.../tap/`` asks ``/tap//sync``); a redirect would make them
    repeat a POST or fail. No route of the archive ends with a slash.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if "//" in path or (len(path) > 1 and path.endswith("/")):
            path = _SLASHES.sub("/", path)
            environ["PATH_INFO"] = path.rstrip("/") or "/"
        return self.app(environ, start_response)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _before() -> None:
    given = request.headers.get("X-Request-Id", "")
    g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:12]
    if "\x00" in request.path:
        # no name in the archive holds NUL, and PostgreSQL cannot take it
        raise UsageFault("the URL path contains a NUL character")


def _after(resp: Response) -> Response:
    resp.headers["Server"] = SERVER_HEADER
    if request.path.startswith(CORS_PREFIXES):
        resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp


def _fault_response(fault: Fault) -> Response:
    rendered = render_fault(fault, web.fault_style(), g.get("wants_votable", True))
    resp = Response(rendered.body, status=rendered.status,
                    content_type=rendered.content_type)
    for name, value in rendered.headers:
        resp.headers.add(name, value)
    return resp


def _handle_fault(fault: Fault) -> Response:
    log.info("%s %s -> %s [%s]", request.method, request.path, fault.text,
             g.get("request_id"))
    return _fault_response(fault)


#: Fault names of HTTP errors raised by Flask and werkzeug themselves.
HTTP_FAULT_NAMES = {401: "AuthorizationFault", 403: "AuthorizationFault",
                    404: "NotFoundFault", 503: "TransientFault"}


def _handle_http(exc: HTTPException) -> Response:
    # Unknown routes, wrong methods, oversized or malformed bodies: the same
    # error document as the blueprint's own faults, never werkzeug's HTML.
    code = exc.code or 500
    fault = Fault(exc.description or exc.name)
    fault.status = code
    fault.name = HTTP_FAULT_NAMES.get(code, "UsageFault" if code < 500
                                      else "FatalFault")
    resp = _fault_response(fault)
    valid = getattr(exc, "valid_methods", None)
    if valid:
        resp.headers["Allow"] = ", ".join(valid)
    return resp


def _handle_unexpected(exc: Exception) -> Response:
    if database_unavailable(exc):
        # down, restarting, in recovery or out of connections, whichever way
        # the route reached it (SQLAlchemy, the pool, psycopg2): try later
        log.error("database unavailable on %s %s: %s [%s]", request.method,
                  request.path, (str(exc).strip() or repr(exc)).splitlines()[0],
                  g.get("request_id"))
        return _fault_response(unavailable_fault())
    if isinstance(exc, DataError):
        # a value the database cannot hold (an identifier past bigint...)
        log.info("data error on %s %s: %s [%s]", request.method, request.path,
                 str(exc).splitlines()[0], g.get("request_id"))
        return _fault_response(UsageFault("a parameter value is out of range"))
    if isinstance(exc, (TimeoutError, ConnectionError)):
        # the client stalled or went away while sending its request
        log.info("client I/O failed on %s %s: %s [%s]", request.method, request.path,
                 exc, g.get("request_id"))
        fault = UsageFault("the request body stalled or was cut off")
        fault.status = 408
        return _fault_response(fault)
    log.exception("unexpected error on %s %s [%s]", request.method, request.path,
                  g.get("request_id"))
    return _fault_response(
        FatalFault(f"internal error (request {g.get('request_id')})")
    )


def landing() -> str:
    """Say what the archive holds and list its services."""
    counts: dict[str, Any] = {"total": 0, "instrument": [], "level": [], "runs": []}
    with web.reading() as conn:
        counts["total"] = conn.execute(
            text("SELECT count(*) FROM pessto.products")).scalar_one()
        counts["instrument"] = conn.execute(text(
            "SELECT instrument, mode, count(*) FROM pessto.products "
            "GROUP BY 1, 2 ORDER BY 1, 2")).all()
        counts["level"] = conn.execute(text(
            "SELECT level, category, count(*) FROM pessto.products "
            "GROUP BY 1, 2 ORDER BY 1, 2")).all()
        counts["runs"] = conn.execute(text(
            "SELECT r.name, r.eso_run, r.instrument, r.first_night, r.last_night, "
            "count(p.product_id) FROM pessto.runs r "
            "LEFT JOIN pessto.products p ON p.run_id = r.run_id "
            "GROUP BY 1, 2, 3, 4, 5 ORDER BY r.first_night DESC")).all()
        from vo_archive.web.pages.routes import landing_context

        extra = landing_context(conn)
    return render_template("landing.html", counts=counts, base=web.base_url(),
                           version=__version__, **extra)
