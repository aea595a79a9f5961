"""Every VOTable the services write passes STILTS votlint with no error or warning.

TOPCAT and STILTS read these documents with STIL; votlint is STIL's validator
(schema, datatypes, arraysizes, UCDs, units). Success answers, metadata answers
and errors of each service are checked.
"""

from __future__ import annotations

import io
import urllib.parse

import numpy as np
import pytest
from astropy.io.votable import parse
from sqlalchemy import text

from tests.conftest import LiveServer
from tests.service.votlint import votlint
from vo_archive.vo.votable import Field, TableDocument, stream_votable

Q = urllib.parse.quote


def _did_and_spectrum(server: LiveServer) -> tuple[str, str]:
    with server.archive.engine.connect() as conn:
        did = conn.execute(text(
            "SELECT obs_publisher_did FROM ivoa.obscore ORDER BY obs_publisher_did "
            "LIMIT 1")).scalar_one()
        spec = conn.execute(text(
            "SELECT obs_publisher_did FROM ivoa.obscore "
            "WHERE dataproduct_type = 'spectrum' ORDER BY 1 LIMIT 1")).scalar_one()
    return did, spec


ANSWERS = [
    "/scs?RA=0&DEC=-12.5&SR=5",
    "/scs?RA=0&DEC=-12.5&SR=5&VERB=3",
    "/scs?RA=0&DEC=-12.5&SR=0",
    "/scs?RA=0&DEC=95&SR=1",
    "/siap?POS=0,-12.5&SIZE=10",
    "/siap?FORMAT=METADATA",
    "/siap?POS=0,-95&SIZE=1",
    "/sia2/query?POS=" + Q("CIRCLE 0 -12.5 10"),
    "/sia2/query?MAXREC=0",
    "/sia2/query?POS=" + Q("CIRCLE 0 -95 10"),
    "/ssap?REQUEST=queryData&POS=0,-12.5&SIZE=20",
    "/ssap?REQUEST=queryData&FORMAT=METADATA",
    "/ssap?REQUEST=queryData&POS=0,-95",
    "/tap/sync?LANG=ADQL&QUERY=" + Q("SELECT TOP 50 * FROM ivoa.obscore"),
    "/tap/sync?LANG=ADQL&RESPONSEFORMAT=votable/b2&QUERY="
    + Q("SELECT TOP 50 * FROM ivoa.obscore"),
    "/tap/sync?LANG=ADQL&QUERY=" + Q("SELECT TOP 50 * FROM pessto.products"),
    "/tap/sync?LANG=ADQL&QUERY=" + Q("SELECT TOP 20 * FROM pessto.versions"),
    "/tap/sync?LANG=ADQL&QUERY=" + Q("SELECT * FROM pessto.runs"),
    "/tap/sync?LANG=ADQL&QUERY=" + Q("SELECT TOP 20 * FROM pessto.targets"),
    "/tap/sync?LANG=ADQL&QUERY=" + Q("SELECT TOP 20 * FROM pessto.provenance"),
    "/tap/sync?LANG=ADQL&QUERY=" + Q("SELECT * FROM TAP_SCHEMA.columns"),
    "/tap/sync?LANG=ADQL&MAXREC=3&QUERY=" + Q("SELECT * FROM ivoa.obscore"),
    "/tap/sync?LANG=ADQL&QUERY=" + Q("SELEKT nothing"),
]


@pytest.mark.parametrize("path", ANSWERS)
def test_answers_pass_votlint(live_server: LiveServer, path: str) -> None:
    r = live_server.get(path)
    assert r.status_code in (200, 400), r.text[:300]
    assert votlint(r.content) == []


def test_datalink_and_getdata_pass_votlint(live_server: LiveServer) -> None:
    did, spec = _did_and_spectrum(live_server)
    for path in (f"/datalink/links?ID={Q(did)}", f"/datalink/links?ID={Q(spec)}",
                 f"/ssap?REQUEST=getData&PUBDID={Q(spec)}"
                 "&FORMAT=application/x-votable%2Bxml"):
        r = live_server.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        assert votlint(r.content) == [], path


def test_images_without_a_footprint_pass_votlint(live_server: LiveServer) -> None:
    # an image with no sky WCS has no s_region: SIA2's DALI polygon cell is null
    with live_server.archive.engine.connect() as conn:
        dids = conn.execute(text(
            "SELECT obs_publisher_did FROM ivoa.obscore WHERE s_region IS NULL "
            "AND dataproduct_type = 'image' ORDER BY 1 LIMIT 2")).scalars().all()
    assert dids, "the demo has images without WCS"
    for path in ["/sia2/query?" + "&".join(f"ID={Q(d)}" for d in dids),
                 "/sia2/query?MAXREC=100000",
                 "/tap/sync?LANG=ADQL&QUERY=" + Q(
                     "SELECT * FROM ivoa.obscore WHERE s_region IS NULL"),
                 "/tap/sync?LANG=ADQL&QUERY=" + Q(
                     "SELECT CENTROID(s_region) AS c, POINT(s_ra, s_dec) AS p "
                     "FROM ivoa.obscore WHERE s_region IS NULL")]:
        r = live_server.get(path)
        assert r.status_code == 200, r.text[:300]
        assert votlint(r.content) == [], path
    r = live_server.get("/sia2/query?" + "&".join(f"ID={Q(d)}" for d in dids))
    t = parse(io.BytesIO(r.content), verify="exception").get_first_table()
    assert sorted(t.array["obs_publisher_did"]) == sorted(dids)
    assert all(np.ma.getmaskarray(region).all() for region in t.array["s_region"])


@pytest.mark.parametrize("datatype", ["double", "float"])
def test_null_dali_shapes_pass_votlint(datatype: str) -> None:
    fields = [Field("p", datatype, "2", "deg", "pos.eq", xtype="point"),
              Field("c", datatype, "3", "deg", "pos.outline", xtype="circle"),
              Field("i", datatype, "2", "d", "time.interval", xtype="interval"),
              Field("s", datatype, "*", "deg", "pos.outline", xtype="polygon"),
              Field("n", datatype, "*", "deg", "pos.outline")]
    rows = [([1.0, 2.0], [1.0, 2.0, 0.5], [50000.0, 50001.0],
             [1.0, 2.0, 3.0, 2.0, 2.0, 3.0], [1.0]),
            (None, None, None, None, None)]
    body = b"".join(stream_votable(TableDocument(fields), rows, None))
    assert votlint(body) == []
    null = parse(io.BytesIO(body), verify="exception").get_first_table().array[1]
    for name in "pcis":
        assert np.ma.getmaskarray(null[name]).all(), name
