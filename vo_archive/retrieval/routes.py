"""Routes: runs, objects, Phase 3 releases, product versions, bulk downloads.

Pages answer HTML to browsers and JSON to scripts (``?format=json`` or
``Accept: application/json``). Downloads stream; errors are ``text/plain``
starting with the fault name (400 for a bad parameter, 404 for an unknown run,
object or empty selection, 409 for an invalid Phase 3 release).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, render_template, request
from flask import g as flask_g

from vo_archive import __version__, web
from vo_archive.retrieval import bundle, query, service
from vo_archive.retrieval.params import (
    KNOWN_PRODUCT_TYPES,
    SELECTION_PARAMS,
    ObjectSearch,
    check_known,
    parse_format,
    parse_radius,
    parse_selection,
)
from vo_archive.retrieval.phase3 import ReleaseInvalid, validate_run
from vo_archive.retrieval.service import Download
from vo_archive.vo.dali.errors import FaultStyle, UsageFault
from vo_archive.vo.dali.params import ParamSet, parse_int

log = logging.getLogger(__name__)

bp = Blueprint("retrieval", __name__)
web.set_fault_style(bp.name, FaultStyle.TEXT)

PAGE_PARAMS = SELECTION_PARAMS | {"FORMAT"}
OBJECT_PARAMS = PAGE_PARAMS | {"RADIUS"}
FACETS = {"level": ("intermediate", "final"), "category": ("calib", "science"),
          "instrument": ("EFOSC", "SOFI"), "mode": ("imaging", "spectroscopy")}


def wants_json(params: ParamSet) -> bool:
    """Whether the caller asked for JSON (``FORMAT=json`` or the Accept header)."""
    fmt = (params.single("FORMAT") or "").strip().lower()
    if fmt in ("json", "application/json"):
        return True
    if fmt in ("html", "text/html"):
        return False
    if fmt:
        raise UsageFault(f"parameter FORMAT: {fmt!r} is not html or json", "FORMAT")
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _page(template: str, params: ParamSet, data: dict[str, Any], **html: Any
          ) -> Response | str:
    if wants_json(params):
        return Response(_json(data), mimetype="application/json")
    return render_template(template, version=__version__, data=data, **html)


def _json(data: Any) -> str:
    from flask import json

    return json.dumps(data, indent=1)


def _stream(dl: Download) -> Response:
    headers = {
        "Content-Disposition": f'attachment; filename="{dl.filename}"',
        "X-Archive-Files": str(dl.files),
        "X-Archive-Payload-Bytes": str(dl.payload),
        "Cache-Control": "no-store",
    }
    length = dl.length
    if length is not None:
        headers["Content-Length"] = str(length)
    log.info("download %s: %d files, %d bytes [%s]", dl.filename, dl.files,
             dl.payload, flask_g.get("request_id"))
    return Response(dl.chunks(), mimetype=bundle.MIME[dl.fmt],
                    headers=headers, direct_passthrough=True)


@bp.get("/runs")
def runs() -> Response | str:
    """List observing runs with the number of products the caller may see."""
    params = web.params()
    check_known(params, frozenset({"FORMAT"}))
    with web.reading() as conn:
        data = {"runs": query.list_runs(conn)}
    return _page("runs.html", params, data)


@bp.get("/runs/<run_name>")
def run_page(run_name: str) -> Response | str:
    """Show a run: its products, filtered by the selection parameters."""
    params = web.params()
    check_known(params, PAGE_PARAMS)
    sel = parse_selection(params)
    with web.reading() as conn:
        run = query.find_run(conn, run_name)
        files = query.run_files(conn, run, sel)
    data = {"run": run.as_json(), "selection": sel.query_items(),
            "count": len(files), "bytes": sum(f.file_size for f in files),
            "products": [f.as_json() for f in files]}
    return _page("run.html", params, data, sel=sel, facets=FACETS,
                 types=sorted(KNOWN_PRODUCT_TYPES), kind="run", title=run.name,
                 download_url=f"/runs/{run.name}/download")


@bp.route("/runs/<run_name>/download", methods=["GET", "POST"])
def run_download(run_name: str) -> Response:
    """Stream a run's selected products as tar or zip with a manifest."""
    params = web.params()
    check_known(params, SELECTION_PARAMS | {"FORMAT"})
    sel, fmt = parse_selection(params), parse_format(params)
    with web.reading() as conn:
        dl = service.run_download(conn, run_name, sel, fmt,
                                  web.settings().storage_dir, int(time.time()))
    return _stream(dl)


@bp.get("/runs/<run_name>/phase3")
def phase3_report(run_name: str) -> Response | str:
    """Validate a run's ESO Phase 3 release and show the report."""
    params = web.params()
    check_known(params, frozenset({"FORMAT"}))
    fmt = (params.single("FORMAT") or "").lower()
    with web.reading() as conn:
        run = query.find_run(conn, run_name)
        report, _ = validate_run(conn, run, web.settings().storage_dir)
    if fmt in ("text", "text/plain"):
        return Response(report.text(), mimetype="text/plain")
    return _page("phase3.html", params, report.as_json(), report=report, run=run)


@bp.get("/runs/<run_name>/phase3/bundle")
def phase3_bundle(run_name: str) -> Response:
    """Stream a valid Phase 3 release (files, manifest, report); refuse others."""
    params = web.params()
    check_known(params, frozenset({"FORMAT"}))
    fmt = parse_format(params)
    with web.reading() as conn:
        report, dl = service.phase3_download(conn, run_name, fmt,
                                             web.settings().storage_dir,
                                             int(time.time()))
    if dl is None:
        raise ReleaseInvalid(
            f"the Phase 3 release of run {run_name} is {report.status}; nothing "
            f"shipped.\n\n{report.text()}")
    return _stream(dl)


@bp.get("/objects")
def objects() -> Response | str:
    """List (or search, ``Q=``) the objects with products the caller may see."""
    params = web.params()
    check_known(params, frozenset({"FORMAT", "Q"}))
    q = (params.single("Q") or "").strip()
    with web.reading() as conn:
        data = {"query": q, "objects": query.list_targets(conn, q or None)}
    return _page("objects.html", params, data, q=q)


@bp.get("/objects/<path:name>")
def object_page(name: str) -> Response | str:
    """Show everything of one object: by name or alias, and by position."""
    params = web.params()
    check_known(params, OBJECT_PARAMS)
    sel, search = parse_selection(params), ObjectSearch(name, parse_radius(params))
    with web.reading() as conn:
        target = query.find_target(conn, name)
        files = query.object_files(conn, target, search, sel)
        marshall = query.marshall_info(conn, target.target_id)
        data = {"object": target.as_json(), "marshall": marshall,
                "radius_arcsec": search.radius_arcsec,
                "selection": sel.query_items(), "count": len(files),
                "bytes": sum(f.file_size for f in files),
                "products": [f.as_json() for f in files]}
        if wants_json(params):
            return Response(_json(data), mimetype="application/json")
        from vo_archive.web.pages.routes import render_object

        return render_object(conn, target, files, data=data, sel=sel,
                             facets=FACETS, types=sorted(KNOWN_PRODUCT_TYPES),
                             kind="object", title=target.name,
                             radius=search.radius_arcsec,
                             download_url=f"/objects/{target.name}/download")


@bp.route("/objects/<path:name>/download", methods=["GET", "POST"])
def object_download(name: str) -> Response:
    """Stream an object's selected products as tar or zip with a manifest."""
    params = web.params()
    check_known(params, SELECTION_PARAMS | {"FORMAT", "RADIUS"})
    sel, fmt = parse_selection(params), parse_format(params)
    search = ObjectSearch(name, parse_radius(params))
    with web.reading() as conn:
        dl = service.object_download(conn, search, sel, fmt,
                                     web.settings().storage_dir, int(time.time()))
    return _stream(dl)


@bp.get("/products/<product_id>/versions")
def versions(product_id: str) -> Response | str:
    """List the versions of a product."""
    params = web.params()
    check_known(params, frozenset({"FORMAT"}))
    pid = parse_int(product_id, "product id")
    with web.reading() as conn:
        product, rows = query.product_versions(conn, pid)
    return _page("versions.html", params, {"product": product, "versions": rows})
