"""``/sia2``: SIA 2.0 ``{query}``, and its VOSI resources."""

from __future__ import annotations

from flask import Blueprint, Response, g

from siap.sia2 import capability
from siap.sia2.params import parse_response_format, parse_sia2, require_votable
from siap.sia2.query import build_query, fields, row_converter
from vo_archive import web
from vo_archive.vo.dal import datalink_descriptor, votable_response
from vo_archive.vo.dali.errors import FaultStyle
from vo_archive.vo.vosi import add_vosi_routes
from vo_archive.vo.votable import Info, TableDocument

bp = Blueprint("sia2", __name__)
web.set_fault_style(bp.name, FaultStyle.DALI)
add_vosi_routes(bp, capability.capabilities)


@bp.route("/query", methods=["GET", "POST"])
def query() -> Response:
    """Answer an SIA 2.0 query; MAXREC=0 gives the metadata (§2.1.18)."""
    params = web.params()
    response_format = parse_response_format(params)
    g.wants_votable = response_format == "votable"
    require_votable(response_format)
    s = web.settings()
    q = parse_sia2(params, s.maxrec_default, s.maxrec_hard)
    doc = TableDocument(
        fields(), table_name="obscore",
        description="PESSTO images (ObsCore 1.1)",
        infos=[Info("QUERY_STATUS", "OK"),
               Info("standardID", capability.STANDARD_ID)],
        trailing_resources=[capability.self_descriptor(),
                            datalink_descriptor("obs_publisher_did")],
    )
    return votable_response(doc, build_query(q), q.maxrec,
                            row_converter(web.url_maker()), region_param="POS")
