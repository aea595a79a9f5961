"""Routes of the pages: BokehJS, the search box, the upload page, spectra as CSV.

The object page itself answers at ``/objects/<name>`` (the retrieval
blueprint, which also answers its JSON); :func:`render_object` renders its HTML.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, redirect, render_template, send_from_directory
from sqlalchemy import Connection
from werkzeug.wrappers import Response as WerkzeugResponse

from vo_archive import __version__, web
from vo_archive.access import current_caller
from vo_archive.ingest.storage import Storage
from vo_archive.retrieval import query
from vo_archive.retrieval.params import check_known
from vo_archive.retrieval.query import ProductFile, TargetInfo
from vo_archive.spectra import NotASpectrum, read_spectrum
from vo_archive.vo.dali.errors import FaultStyle, NotFoundFault
from vo_archive.web.auth import UPLOAD_ROLES, session_csrf
from vo_archive.web.files import find_version
from vo_archive.web.pages import objectpage, viewer
from vo_archive.web.pages.search import parse_search, targets_near

bp = Blueprint("pages", __name__)
web.set_fault_style(bp.name, FaultStyle.TEXT)


def bokeh_version() -> str:
    """Return the version of the BokehJS the pages load."""
    import bokeh

    return str(bokeh.__version__)


def bokeh_dir() -> Path:
    """Return the folder of BokehJS's files inside the ``bokeh`` package."""
    from bokeh.util.paths import bokehjs_path

    return Path(bokehjs_path()) / "js"


@bp.get("/static/bokeh/<version>/<name>")
def bokeh_js(version: str, name: str) -> Response:
    """Serve BokehJS from the ``bokeh`` package (versioned URL: cached a year)."""
    if version != bokeh_version() or not name.endswith(".js") or "/" in name:
        raise NotFoundFault(f"no BokehJS file {version}/{name}")
    resp = send_from_directory(bokeh_dir(), name, mimetype="text/javascript",
                               max_age=365 * 86400)
    resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return resp


@bp.app_context_processor
def page_context() -> dict[str, Any]:
    """Give every template who is signed in and the sign-out form's token."""
    caller = current_caller()
    value = g.get("session_value")
    return {"caller": None if caller.anonymous else caller,
            "signout_csrf": session_csrf(value) if value else "",
            "can_upload": bool(caller.roles & UPLOAD_ROLES),
            "version": __version__}


@bp.get("/search")
def search() -> WerkzeugResponse | str:
    """Go where the search box points: an object, the objects near a position, a run."""
    params = web.params()
    check_known(params, frozenset({"Q", "RADIUS"}))
    s = parse_search(params.single("Q") or "", params.single("RADIUS"))
    with web.reading() as conn:
        if s.is_position:
            assert s.ra is not None and s.dec is not None  # noqa: S101 - typed
            found = targets_near(conn, s.ra, s.dec, s.radius_arcsec)
            if len(found) == 1:
                return redirect(f"/objects/{found[0]['name']}", code=303)
            return render_template("objects.html", data={"objects": found,
                                                         "query": s.text},
                                   q=s.text, radius=s.radius_arcsec)
        target = _maybe(lambda: query.find_target(conn, s.text))
        if target is not None:
            return redirect(f"/objects/{target.name}", code=303)
        run = _maybe(lambda: query.find_run(conn, s.text))
        if run is not None:
            return redirect(f"/runs/{run.name}", code=303)
        found = query.list_targets(conn, s.text)
    if len(found) == 1:
        return redirect(f"/objects/{found[0]['name']}", code=303)
    return render_template("objects.html", data={"objects": found, "query": s.text},
                           q=s.text)


def _maybe(fn: Any) -> Any:
    try:
        return fn()
    except NotFoundFault:
        return None


@bp.get("/upload")
def upload_page() -> str:
    """Show the upload page (reducers and administrators upload; others are told)."""
    return render_template("upload.html")


@bp.get("/products/<int:product_id>/versions/<int:version_no>/spectrum.csv")
def spectrum_csv(product_id: int, version_no: int) -> Response:
    """Serve a 1D spectrum as CSV (wavelength, flux, error), for callers who see it."""
    f = find_version(product_id, version_no)
    try:
        s = read_spectrum(Storage(web.settings().storage_dir).path_of(f.storage_key))
    except NotASpectrum as exc:
        raise NotFoundFault(f"product {product_id} v{version_no} is not a 1D "
                            f"spectrum ({exc})") from None
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["wavelength_angstrom", f"flux_{s.flux_unit}", "error"])
    err = s.error if s.error is not None else [None] * len(s.wave)
    for x, y, e in zip(s.wave, s.flux, err, strict=True):
        w.writerow([f"{x:.3f}", f"{y:.6g}", "" if e is None else f"{e:.6g}"])
    name = f.filename.rsplit(".fits", 1)[0] + ".csv"
    return Response(buf.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{name}"'})


def object_view(conn: Connection, target: TargetInfo, files: list[ProductFile]
                ) -> objectpage.ObjectView:
    """Gather the top of an object page (on the caller's connection)."""
    s = web.settings()
    view = objectpage.ObjectView()
    if target.ra is not None and target.dec is not None:
        view.ra_sex, view.dec_sex = objectpage.sexagesimal(target.ra, target.dec)
    ids = objectpage.version_ids(conn, files)
    view.history = objectpage.classifications(conn, list(ids.values()))
    view.latest = next((c for c in view.history if c["good"]), None) or (
        view.history[0] if view.history else None)
    plot, used = objectpage.read_plot_spectra(files, s.storage_dir)
    view.spectra = [{"file": f, **objectpage.spectrum_links(f, s.publisher_authority)}
                    for f in used]
    template = None
    if view.latest is not None and view.latest.get("best"):
        template = objectpage.template_curve(view.latest["best"], s.extra)
    z = view.latest["redshift"] if view.latest and view.latest["redshift"] \
        is not None else (target.redshift or 0.0)
    if plot:
        view.plot_script, view.plot_div = viewer.build_plot(plot, template, z)
    view.images = objectpage.image_marks(files, target, s.storage_dir)
    view.timeline = objectpage.timeline(files)
    view.runs = sorted({f.run_name for f in files if f.run_name})
    view.tap_url = objectpage.tap_query_url(target.name)
    return view


def render_object(conn: Connection, target: TargetInfo, files: list[ProductFile],
                  **html: Any) -> str:
    """Render an object page's HTML."""
    view = object_view(conn, target, files)
    return render_template("object.html", view=view, bokeh_version=bokeh_version(),
                           target=target, **html)


def landing_context(conn: Connection) -> dict[str, Any]:
    """Return the landing page's services (registry descriptions) and counters.

    Each service by its human name, standard, base URL and capabilities URL;
    the classification counters of the spectra the caller may see.
    """
    from classify.counters import count_classifications
    from vo_archive.vo.registry import services

    base = web.public_base_url()
    listed = [{"title": s.title, "standard": s.standard, "base": base + s.base,
               "capabilities": base + s.base + "/capabilities"}
              for s in services()]
    return {"services": listed, "counters": count_classifications(conn)}
