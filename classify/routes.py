"""``/classify``: classify a spectrum now (sync), read stored verdicts, VOSI."""

from __future__ import annotations

from flask import Blueprint, Response, g, request

from classify import capability
from classify.params import ResponseFormat, parse_classify, parse_format
from classify.service import (
    MAX_UPLOAD,
    archived_spectrum,
    library,
    read_uploaded,
    result_document,
    run_classifier,
    stored_document,
)
from classify.storage import parse_identifier, stored_classifications
from vo_archive import web
from vo_archive.vo.dali.errors import (
    FaultStyle,
    NotFoundFault,
    PayloadTooLarge,
    UsageFault,
)
from vo_archive.vo.vosi import add_vosi_routes

bp = Blueprint("classify", __name__)
web.set_fault_style(bp.name, FaultStyle.DALI)
add_vosi_routes(bp, capability.capabilities)

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def uploaded() -> tuple[bytes, str] | None:
    """Return the spectrum sent with the request (a file part or the body), if any.

    Raises
    ------
    PayloadTooLarge
        If the request is larger than a spectrum may be (read no further).
    """
    if (request.content_length or 0) > MAX_UPLOAD + (1 << 20):
        raise PayloadTooLarge(f"a spectrum may be at most {MAX_UPLOAD >> 20} MiB")
    if request.files:
        if len(request.files) > 1:
            raise UsageFault("upload one spectrum per request")
        part = next(iter(request.files.values()))
        return part.read(), part.filename or "upload"
    if request.method == "POST" and request.mimetype not in _FORM_TYPES \
            and request.content_length:
        return request.get_data(), "upload"
    return None


def _response(body: bytes, fmt: ResponseFormat) -> Response:
    return Response(body, content_type=fmt.value)


@bp.route("", methods=["GET"], strict_slashes=False)
def home() -> Response:
    """Describe the service (an HTML page at the base URL)."""
    base = web.absolute("/classify")
    return Response(
        "<!DOCTYPE html><html><head><title>PESSTO spectral classification</title>"
        "</head><body><h1>PESSTO archive: spectral classification</h1>"
        f"<p>Template cross-correlation of 1D spectra at <code>{base}/sync</code> "
        f"(ID=product id or dataset identifier, or an uploaded spectrum) and "
        f"<code>{base}/async</code> (UWS 1.1); stored classifications at "
        f"<code>{base}/stored?ID=...</code>. See the "
        "<a href='classify/capabilities'>capabilities</a> for the parameters.</p>"
        "</body></html>", mimetype="text/html")


@bp.route("/sync", methods=["GET", "POST"])
def sync() -> Response:
    """Classify one spectrum, archived (ID) or uploaded, and answer at once."""
    params = web.params()
    g.wants_votable = parse_format(params) is ResponseFormat.VOTABLE
    upload = uploaded()
    req = parse_classify(params, upload is not None)
    s = web.settings()
    if req.ident is not None:
        with web.reading() as conn:
            spectrum, source = archived_spectrum(conn, req.ident, s)
    else:
        assert upload is not None  # noqa: S101 - parse_classify requires one
        spectrum, source = read_uploaded(*upload), upload[1]
    verdict = run_classifier(spectrum, req.options, library(s))
    return _response(result_document(verdict, source, req.response), req.response)


@bp.route("/stored", methods=["GET"])
def stored() -> Response:
    """Return the newest stored classification of an archived spectrum."""
    params = web.params()
    fmt = parse_format(params)
    g.wants_votable = fmt is ResponseFormat.VOTABLE
    ident = params.required("ID")
    pid, vno = parse_identifier(ident, web.settings().publisher_authority)
    with web.reading() as conn:
        found = stored_classifications(conn, pid, vno, latest_only=True)
    if not found:
        raise NotFoundFault(f"no stored classification of {ident} (not classified "
                            "yet, not a 1D science spectrum, or not public)")
    return _response(stored_document(found[0], fmt), fmt)
