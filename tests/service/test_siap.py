"""SIA 1.0 at /siap: pyvo SIAService, STILTS, FORMAT, INTERSECT, metadata, errors."""

from __future__ import annotations

import subprocess

import pytest
import pyvo
import requests
from sqlalchemy import text

from tests.conftest import LiveServer
from tests.service.vocheck import SIA1_UCD1, strict_votable


def _image(live_server: LiveServer) -> tuple[str, float, float]:
    with live_server.archive.engine.connect() as conn:
        return conn.execute(text(
            "SELECT obs_publisher_did, s_ra, s_dec FROM ivoa.obscore WHERE "
            "dataproduct_type = 'image' ORDER BY pessto_product_id LIMIT 1")).one()


def test_pyvo_sia1(live_server: LiveServer) -> None:
    did, ra, dec = _image(live_server)
    res = pyvo.dal.SIAService(live_server.url + "/siap").search(
        pos=(ra, dec), size=0.05, format="image/fits")
    recs = [r for r in res if str(r["publisher_did"]) == did]
    assert len(recs) == 1
    rec = recs[0]
    assert rec.format == "image/fits" and rec.naxes == 2
    assert list(rec.naxis.value) == [200, 200]
    # (pyvo's getdataset() would go through DataLink and fetch the IVOA
    # vocabulary from the network; the access reference is the file itself)
    assert requests.get(rec.acref, timeout=60).content[:6] == b"SIMPLE"
    assert rec.cdmatrix.shape == (2, 2) and rec.coord_projection == "TAN"


def test_format_all_gives_fits_and_png(live_server: LiveServer) -> None:
    did, ra, dec = _image(live_server)
    r = live_server.get(f"/siap?POS={ra},{dec}&SIZE=0.02")
    table = strict_votable(r.content, SIA1_UCD1).get_first_table()
    formats = {str(f) for f, d in zip(table.array["format"],
                                      table.array["publisher_did"], strict=True)
               if str(d) == did}
    assert formats == {"image/fits", "image/png"}
    png = next(str(u) for u, f in zip(table.array["accref"], table.array["format"],
                                      strict=True) if str(f) == "image/png")
    assert requests.get(png, timeout=60).content[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("intersect,size,found", [
    ("OVERLAPS", "0.01", True), ("CENTER", "0.01", True), ("COVERS", "0.01", True),
    ("ENCLOSED", "0.01", False), ("ENCLOSED", "1", True),
])
def test_intersect(live_server: LiveServer, intersect: str, size: str,
                   found: bool) -> None:
    did, ra, dec = _image(live_server)
    r = live_server.get(f"/siap?POS={ra},{dec}&SIZE={size}&INTERSECT={intersect}"
                        "&FORMAT=image/fits")
    table = strict_votable(r.content, SIA1_UCD1).get_first_table()
    assert (did in {str(x) for x in table.array["publisher_did"]}) is found


def test_metadata(live_server: LiveServer) -> None:
    r = live_server.get("/siap?FORMAT=METADATA")
    doc = strict_votable(r.content, SIA1_UCD1)
    assert {p.name for p in doc.resources[0].params} >= {"INPUT:POS", "INPUT:SIZE",
                                                         "INPUT:FORMAT"}
    ucds = {f.ucd for f in doc.get_first_table().fields}
    assert {"VOX:Image_Title", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN", "VOX:Image_Naxes",
            "VOX:Image_Naxis", "VOX:Image_Scale", "VOX:Image_Format",
            "VOX:Image_AccessReference", "VOX:WCS_CDMatrix"} <= ucds


@pytest.mark.parametrize("query,name", [("SIZE=1", "POS"), ("POS=1", "POS"),
                                        ("POS=1,2&SIZE=-1", "SIZE"),
                                        ("POS=1,2&INTERSECT=SOME", "INTERSECT"),
                                        ("POS=1,2&FORMAT=nonsense", "FORMAT")])
def test_errors(live_server: LiveServer, query: str, name: str) -> None:
    r = live_server.get("/siap?" + query)
    assert r.status_code == 400
    status = strict_votable(r.content).resources[0].infos[0]
    assert status.name == "QUERY_STATUS" and status.value == "ERROR"
    assert name in status.content


def test_stilts_sia1(live_server: LiveServer) -> None:
    _, ra, dec = _image(live_server)
    out = subprocess.run(
        ["stilts", "cone", f"serviceurl={live_server.url}/siap?", "servicetype=sia1",
         f"lon={ra}", f"lat={dec}", "radius=0.05", "ofmt=csv", "out=-"],
        capture_output=True, text=True, timeout=120, check=True)
    assert len(out.stdout.strip().splitlines()) >= 2


@pytest.mark.parametrize("intersect",
                         ["OVERLAPS", "CENTER", "COVERS", "ENCLOSED", None])
def test_results_equal_a_brute_force_scan(live_server: LiveServer,
                                          intersect: str | None) -> None:
    """The HEALPix candidates lose nothing: each INTERSECT mode gives the images
    that the exact test finds by scanning every current image."""
    from sqlalchemy import func, select

    from siap.params import Intersect, parse_sia1
    from vo_archive.vo.dali.params import ParamSet
    from vo_archive.vo.positional import bind_region
    from vo_archive.vo.published import product, version
    from vo_archive.vo.sky import Circle

    _, ra0, dec0 = _image(live_server)
    for ra, dec, size in ((ra0, dec0, "0.02"), (ra0 + 0.01, dec0, "0.005"),
                          (ra0, dec0, "2"), (0.0, -12.5, "5,3")):
        params = [("POS", f"{ra},{dec}")] + ([("SIZE", size)] if intersect else [])
        if intersect:
            params.append(("INTERSECT", intersect))
        q = parse_sia1(ParamSet(params), 1000, 100000)
        region = q.region if q.region is not None else Circle(q.ra, q.dec, 0.0)
        mode = None if q.region is None else q.intersect
        bound, values = bind_region(region, "r",
                                    footprints=mode is not Intersect.CENTER)
        if mode is Intersect.CENTER:
            test = bound.contains(version.c.ra, version.c.dec)
        else:
            op = {None: "@>", Intersect.OVERLAPS: "&&", Intersect.COVERS: "@>",
                  Intersect.ENCLOSED: "<@"}[mode]
            test = bound.footprint_test(version.c.footprint, op)
        with live_server.archive.engine.connect() as conn:
            conn.exec_driver_sql("SET enable_indexscan = off")
            expected = {f"{p}/{n}" for p, n in conn.execute(
                select(version.c.product_id, version.c.version_no)
                .select_from(version.join(product,
                                          product.c.product_id == version.c.product_id))
                .where(version.c.is_current, version.c.footprint.isnot(None),
                       product.c.mode == "imaging",
                       product.c.release_date <= func.now(), test), values)}
        r = live_server.get("/siap?" + "&".join(f"{k}={v}" for k, v in params)
                            + "&FORMAT=image/fits&MAXREC=10000")
        table = strict_votable(r.content, SIA1_UCD1).get_first_table()
        got = {str(u).split("/products/")[1].replace("/versions/", "/")
               for u in table.array["accref"]}
        assert got == expected, (ra, dec, size, intersect)
        # the first region holds the image (ENCLOSED: the image is larger)
        assert expected or size != "0.02" or intersect == "ENCLOSED"
