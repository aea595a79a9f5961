"""``/ssap``: SSA 1.1 queryData and getData, and the VOSI resources."""

from __future__ import annotations

from flask import Blueprint, Response

from ssap import capability
from ssap.getdata import spectrum_document, spectrum_rows
from ssap.params import (
    Request,
    SpectrumFormat,
    parse_getdata,
    parse_query,
    parse_request,
)
from ssap.query import FIELDS, PARAMS, build_query, row_expander, spectrum_format
from vo_archive import web
from vo_archive.ingest.storage import Storage
from vo_archive.spectra import NotASpectrum, read_spectrum
from vo_archive.vo.dal import datalink_descriptor, parse_publisher_did, votable_response
from vo_archive.vo.dali.errors import FaultStyle, NotFoundFault
from vo_archive.vo.vosi import add_vosi_routes
from vo_archive.vo.votable import Info, TableDocument, stream_votable
from vo_archive.web.files import file_response, find_version

bp = Blueprint("ssap", __name__)
web.set_fault_style(bp.name, FaultStyle.DALI)
add_vosi_routes(bp, capability.capabilities, capability.NAMESPACES)


@bp.route("", methods=["GET", "POST"], strict_slashes=False)
def ssa() -> Response:
    """Dispatch on REQUEST (queryData by default)."""
    params = web.params()
    if parse_request(params) is Request.GET:
        return get_data()
    s = web.settings()
    q = parse_query(params, s.maxrec_default, s.maxrec_hard)
    infos = [Info("QUERY_STATUS", "OK"), Info("SERVICE_PROTOCOL", "1.1", "SSAP"),
             Info("standardID", capability.STANDARD_ID)]
    if q.metadata:
        doc = TableDocument(FIELDS, infos, [*capability.input_params(s.maxrec_default),
                                            *PARAMS], table_name="spectra")
        return votable_response(doc, None, None)
    # the DataLink document lists first the format the rows name, which is
    # what pyvo's getdataset fetches (the first #this link)
    fmt = spectrum_format(q.formats)
    doc = TableDocument(FIELDS, infos, list(PARAMS), table_name="spectra",
                        description="PESSTO 1D spectra",
                        trailing_resources=[datalink_descriptor(
                            "ssa_pubDID", preferred_format=fmt.value if fmt
                            else None)])
    return votable_response(doc, build_query(q), q.maxrec,
                            transform=row_expander(q.formats, web.url_maker()))


def get_data() -> Response:
    """Deliver one spectrum as FITS (the file) or as a Spectrum VOTable (SSA 1.1 §7)."""
    req = parse_getdata(web.params())
    ids = parse_publisher_did(req.pubdid, web.settings().publisher_authority)
    if ids is None:
        raise NotFoundFault(f"PUBDID {req.pubdid!r} is not a dataset of this archive")
    f = find_version(*ids)
    if req.format is SpectrumFormat.FITS:
        return file_response(f)
    try:
        spec = read_spectrum(Storage(web.settings().storage_dir).path_of(f.storage_key))
    except NotASpectrum as exc:
        raise NotFoundFault(f"{f.filename} holds no 1D spectrum: {exc}") from exc
    body = b"".join(stream_votable(spectrum_document(spec, req.pubdid),
                                   spectrum_rows(spec), None))
    return Response(body, mimetype="application/x-votable+xml")
