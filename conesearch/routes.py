"""``/scs``: Simple Cone Search 1.03, and its VOSI resources."""

from __future__ import annotations

from flask import Blueprint, Response

from conesearch import capability
from conesearch.params import parse_cone
from conesearch.query import absolute_urls, build_query, fields_for
from vo_archive import web
from vo_archive.vo.dal import datalink_descriptor, votable_response
from vo_archive.vo.dali.errors import FaultStyle
from vo_archive.vo.vosi import add_vosi_routes
from vo_archive.vo.votable import Info, TableDocument

bp = Blueprint("scs", __name__)
web.set_fault_style(bp.name, FaultStyle.SCS)
add_vosi_routes(bp, capability.capabilities, capability.NAMESPACES)


@bp.route("", methods=["GET", "POST"], strict_slashes=False)
def cone() -> Response:
    """Answer a cone search; SR=0 gives the FIELDs and no rows (SCS 1.03 §2)."""
    s = web.settings()
    q = parse_cone(web.params(), s.maxrec_default, s.maxrec_hard)
    doc = TableDocument(
        fields_for(q.verb), table_name="products",
        description="PESSTO products (current versions) around the cone centre",
        infos=[Info("QUERY_STATUS", "OK"),
               Info("standardID", "ivo://ivoa.net/std/ConeSearch")],
        trailing_resources=[datalink_descriptor("obs_publisher_did")],
        # VOTable 1.3: the DataLink descriptor's GROUP is not allowed in a
        # RESOURCE of VOTable 1.1 (votlint); SCS 1.03's UCD1 words stay as they are
        version="1.3",
    )
    query = None if q.sr == 0 else build_query(q)
    return votable_response(doc, query, q.maxrec, absolute_urls([3], web.url_maker()),
                            mimetype="text/xml;content=x-votable")
