"""HTTP routes of /tap (thin: parameters → tap.params, queries → tap.query)."""

from __future__ import annotations

from flask import Blueprint, Response, g, request
from sqlalchemy import Engine

from tap import capability
from tap.examples import examples_document
from tap.params import parse_format, parse_tap
from tap.published import TABLES
from tap.query import Limits, ResultSet, execute
from tap.service import prepare, result_document
from tap.tap_schema import ensure_tap_schema, table_document, tableset_document
from tap.uploads import resolve
from vo_archive import web
from vo_archive.access import current_caller
from vo_archive.vo.dali.errors import FaultStyle, NotFoundFault, UsageFault
from vo_archive.vo.vosi import add_vosi_routes
from vo_archive.web import fetch

bp = Blueprint("tap", __name__)
web.set_fault_style(bp.name, FaultStyle.DALI)
add_vosi_routes(bp, lambda: capability.capabilities(web.settings()),
                capability.NAMESPACES)

@bp.before_request
def _tap_schema_current() -> None:
    ensure_tap_schema(web.engine())


#: Statement timeout of sync queries, seconds (async jobs use executionduration).
SYNC_TIMEOUT = 60.0


def inline_part(name: str) -> bytes | None:
    """Return the multipart part ``name`` of the request (inline UPLOAD)."""
    f = request.files.get(name)
    if f is not None:
        return f.stream.read()
    value = request.form.get(name) if request.method == "POST" else None
    return value.encode() if value is not None else None


def inline_parts() -> dict[str, bytes]:
    """Return every multipart file part of the request."""
    return {name: f.read() for name, f in request.files.items()}


@bp.route("", methods=["GET"])
def home() -> Response:
    """Describe the service (an HTML page at the base URL, TAP 1.1 §2)."""
    base = web.absolute("/tap")
    body = (
        "<!DOCTYPE html><html><head><title>PESSTO TAP service</title></head><body>"
        "<h1>PESSTO archive: Table Access Protocol</h1>"
        f"<p>TAP 1.1 with ADQL 2.1 at <code>{base}</code>. Use TOPCAT, pyvo or "
        "STILTS; see the <a href='tap/examples'>examples</a>, the "
        "<a href='tap/tables'>tables</a> and the "
        "<a href='tap/capabilities'>capabilities</a>.</p></body></html>")
    return Response(body, mimetype="text/html")


@bp.route("/sync", methods=["GET", "POST"])
def sync() -> Response:
    """Run a query and stream its result (TAP 1.1 §2.3)."""
    params = web.params()
    try:
        g.wants_votable = parse_format(params).format.votable
    except UsageFault:
        g.wants_votable = True
    settings = web.settings()
    req = parse_tap(params, settings.maxrec_default, settings.maxrec_hard)
    contents = resolve(req.uploads, inline_part, fetch.policy(settings))
    translation, tables = prepare(req, contents)
    base = web.base_url()
    caller, limits = current_caller(), Limits(SYNC_TIMEOUT, req.maxrec)

    def run(engine: Engine) -> ResultSet:
        return execute(engine, caller, translation, tables, limits, lambda p: base + p)

    # TAP_UPLOAD tables are temporary tables: only the primary can make them
    rs = run(web.engine()) if translation.uploads else web.read(run)
    doc = result_document(rs, req, web.url_maker())
    body = req.output.format.writer(doc, rs.rows(), req.maxrec)
    resp = Response(body, content_type=req.output.content_type)
    resp.call_on_close(rs.close)
    return resp


@bp.route("/tables", methods=["GET"])
def tables() -> Response:
    """VOSI tables (VOSI 1.1 §3.3), ``detail=min`` without columns."""
    detail = (web.params().single("DETAIL") or "max").lower()
    if detail not in ("min", "max"):
        raise UsageFault("detail must be min or max", "detail")
    return Response(tableset_document(detail), mimetype="text/xml")


@bp.route("/tables/<name>", methods=["GET"])
def table(name: str) -> Response:
    """One table's VOSI description with all its columns."""
    found = TABLES.get(name.lower())
    if found is None:
        raise NotFoundFault(f"no table {name}")
    return Response(table_document(found), mimetype="text/xml")


@bp.route("/examples", methods=["GET"])
def examples() -> Response:
    """DALI examples (XHTML + RDFa)."""
    return Response(examples_document(web.absolute("/tap")),
                    mimetype="application/xhtml+xml")
