"""``/statistics``: classification counters per type, per run and per month."""

from __future__ import annotations

from flask import Blueprint, Response, json, render_template, request

from classify.counters import count_classifications
from vo_archive import __version__, web
from vo_archive.vo.dali.errors import FaultStyle, UsageFault

bp = Blueprint("statistics", __name__, template_folder="templates")
web.set_fault_style(bp.name, FaultStyle.TEXT)


@bp.get("/statistics")
def statistics() -> Response | str:
    """Show the classification counters (HTML, or JSON with FORMAT=json)."""
    fmt = (web.params().single("FORMAT") or "").strip().lower()
    if fmt not in ("", "html", "text/html", "json", "application/json"):
        raise UsageFault(f"parameter FORMAT: {fmt!r} is not html or json", "FORMAT")
    as_json = fmt in ("json", "application/json") or (not fmt and (
        request.accept_mimetypes.best_match(["text/html", "application/json"])
        == "application/json"))
    with web.reading() as conn:
        counters = count_classifications(conn)
    if as_json:
        return Response(json.dumps(counters.as_json(), indent=1),
                        mimetype="application/json")
    return render_template("statistics.html", c=counters, version=__version__)
