"""``/soda/sync``: SODA 1.0 {sync} cutouts, and the VOSI resources.

Faults are ``text/plain`` starting with the SODA 1.0 §5.2 error code
(``UsageError``, ``MultiValuedParamNotSupported``, ``AuthenticationError``...);
an ID that is unknown or not visible to the caller gets the answer its file gets
at ``/products`` (401 with challenges when anonymous, 404 ``NotFoundFault``).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, g, request

from soda import capability
from soda.cutout import NoOverlap, cut
from soda.params import parse_cutout
from soda.query import coverage_of
from vo_archive import web
from vo_archive.ingest.storage import Storage
from vo_archive.vo.dal import parse_publisher_did
from vo_archive.vo.dali.errors import Fault, FaultStyle, NotFoundFault, render_fault
from vo_archive.vo.vosi import add_vosi_routes
from vo_archive.web.files import file_response, find_version

log = logging.getLogger(__name__)

bp = Blueprint("soda", __name__)
web.set_fault_style(bp.name, FaultStyle.TEXT)
add_vosi_routes(bp, capability.capabilities)

#: SODA 1.0 §5.2 error codes of the archive's faults.
SODA_ERRORS = {"UsageFault": "UsageError", "TransientFault": "ServiceUnavailable",
               "FatalFault": "Error", "DefaultFault": "Error"}


def _soda_fault(fault: Fault) -> Response:
    log.info("%s %s -> %s [%s]", request.method, request.path, fault.text,
             g.get("request_id"))
    name = SODA_ERRORS.get(fault.name, fault.name)
    if fault.name == "AuthorizationFault":
        name = "AuthenticationError" if fault.status == 401 else "AuthorizationError"
    rendered = render_fault(fault, FaultStyle.TEXT)
    resp = Response(f"{name}: {fault.message}\n", status=rendered.status,
                    content_type=rendered.content_type)
    for header, value in rendered.headers:
        resp.headers.add(header, value)
    return resp


bp.register_error_handler(Fault, _soda_fault)


@bp.route("/sync", methods=["GET", "POST"])
def sync() -> Response:
    """Cut out a piece of one image or spectrum (SODA 1.0 {sync})."""
    req = parse_cutout(web.params())
    s = web.settings()
    ids = parse_publisher_did(req.did, s.publisher_authority)
    if ids is None:
        raise NotFoundFault(f"ID {req.did!r} is not a dataset of this archive")
    f = find_version(*ids)  # the access rule of /products: 404 when not visible
    if not req.filters:
        return file_response(f)
    with web.reading() as conn:
        cov = coverage_of(conn, *ids)
    if cov is None:
        raise NotFoundFault(f"no dataset {req.did} (or it is not public)")
    try:
        body = cut(Storage(s.storage_dir).path_of(f.storage_key), req, cov)
    except NoOverlap as exc:
        log.info("SODA %s: no overlap (%s) [%s]", req.did, exc, g.get("request_id"))
        return Response(status=204)  # SODA 1.0 §5.1: no pixels, no body
    if body is None:
        return file_response(f)
    stem = f.filename.removesuffix(".fits")
    return Response(body, mimetype="application/fits", headers={
        "Content-Disposition": f'attachment; filename="{stem}_cutout.fits"'})
