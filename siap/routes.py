"""``/siap``: Simple Image Access 1.0, and its VOSI resources."""

from __future__ import annotations

from flask import Blueprint, Response

from siap import capability
from siap.params import parse_sia1
from siap.query import FIELDS, build_query, row_expander
from vo_archive import web
from vo_archive.vo.dal import datalink_descriptor, votable_response
from vo_archive.vo.dali.errors import FaultStyle
from vo_archive.vo.vosi import add_vosi_routes
from vo_archive.vo.votable import Info, TableDocument

bp = Blueprint("siap", __name__)
web.set_fault_style(bp.name, FaultStyle.DALI)
add_vosi_routes(bp, capability.capabilities, capability.NAMESPACES)


@bp.route("", methods=["GET", "POST"], strict_slashes=False)
def sia() -> Response:
    """Answer an SIA 1.0 query; FORMAT=METADATA describes it (SIA 1.0 §7.1)."""
    s = web.settings()
    q = parse_sia1(web.params(), s.maxrec_default, s.maxrec_hard)
    infos = [Info("QUERY_STATUS", "OK"), Info("standardID", capability.STANDARD_ID)]
    if q.metadata:
        doc = TableDocument(FIELDS, infos, capability.input_params(), "images")
        return votable_response(doc, None, None, mimetype="text/xml;content=x-votable")
    doc = TableDocument(FIELDS, infos, table_name="images",
                        description="PESSTO images (current versions)",
                        trailing_resources=[datalink_descriptor("publisher_did")])
    return votable_response(doc, build_query(q), q.maxrec,
                            mimetype="text/xml;content=x-votable", region_param="POS",
                            transform=row_expander(q, web.url_maker(),
                                                   s.publisher_authority))
