"""SIA 2.0 at /sia2/query: pyvo SIA2Service, every parameter, metadata, errors."""

from __future__ import annotations

import subprocess

import pytest
import pyvo
from astropy.coordinates import SkyCoord
from sqlalchemy import text

from tests.conftest import LiveServer
from tests.service.vocheck import query_status, strict_votable
from vo_archive.vo.obscore import OBSCORE_COLUMNS


def _image(live_server: LiveServer) -> dict[str, object]:
    with live_server.archive.engine.connect() as conn:
        row = (
            conn.execute(
                text(
                    "SELECT * FROM ivoa.obscore WHERE dataproduct_type = 'image' "
                    "AND s_region IS NOT NULL ORDER BY pessto_product_id LIMIT 1"
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


def _query(live_server: LiveServer, params: list[tuple[str, str]]) -> list[str]:
    r = live_server.get("/sia2/query", params=params)
    assert r.status_code == 200, r.text
    table = strict_votable(r.content).get_first_table()
    return [str(x) for x in table.array["obs_publisher_did"]]


def test_pyvo_sia2_search_and_datalink(live_server: LiveServer) -> None:
    img = _image(live_server)
    sia = pyvo.dal.SIA2Service(live_server.url + "/sia2")
    res = sia.search(pos=(img["s_ra"], img["s_dec"], 0.01))
    dids = [str(r["obs_publisher_did"]) for r in res]
    assert img["obs_publisher_did"] in dids
    assert all(str(r["dataproduct_type"]) == "image" for r in res)
    rec = res[dids.index(img["obs_publisher_did"])]
    assert rec.access_url.startswith(live_server.url + "/products/")
    links = next(res.iter_datalinks())
    assert any(str(s) == "#this" for s in links["semantics"])
    fits_bytes = (
        next(iter(links.bysemantics("#this", include_narrower=False)))
        .getdataset()
        .read()
    )
    assert fits_bytes[:6] == b"SIMPLE"
    assert len(rec["s_region"]) == 8  # a DALI polygon of 4 corners


def test_every_mandatory_obscore_field(live_server: LiveServer) -> None:
    r = live_server.get("/sia2/query?MAXREC=0")
    doc = strict_votable(r.content)
    fields = {f.name: f for f in doc.get_first_table().fields}
    for c in OBSCORE_COLUMNS:
        assert fields[c.name].ucd == c.ucd and fields[c.name].utype == c.utype
    assert query_status(doc) == ["OK", "OVERFLOW"]
    this = next(res for res in doc.resources if res.type == "meta"
                and res.ID == "sia2_this")
    inputs = [p.name for p in this.groups[0].entries]
    for name in ("POS", "BAND", "TIME", "POL", "FOV", "SPATRES", "EXPTIME", "ID",
                 "COLLECTION", "FACILITY", "INSTRUMENT", "DPTYPE", "CALIB", "TARGET",
                 "TIMERES", "SPECRP", "FORMAT", "MAXREC"):
        assert name in inputs
    # one POS naming its three forms: a GROUP's names are unique (votlint)
    assert inputs.count("POS") == 1
    pos = next(p for p in this.groups[0].entries if p.name == "POS")
    assert all(form in pos.description for form in ("CIRCLE", "RANGE", "POLYGON"))


def test_parameters_and_or_semantics(live_server: LiveServer) -> None:
    img = _image(live_server)
    did = str(img["obs_publisher_did"])
    t, em = img["t_min"], img["em_min"]
    pos = f"CIRCLE {img['s_ra']} {img['s_dec']} 0.001"
    assert did in _query(
        live_server,
        [
            ("POS", pos),
            ("TIME", f"{t - 0.01} {t + 0.01}"),
            ("BAND", f"{em} +Inf"),
            ("INSTRUMENT", "SOFI"),
            ("INSTRUMENT", str(img["instrument_name"])),
            ("CALIB", "2"),
            ("DUMMY", "ignore-me"),
            ("FORMAT", "application/fits"),
            ("FORMAT", "application/fits"),
            ("COLLECTION", "PESSTO"),
            ("FACILITY", "ESO-NTT"),
            ("ID", did.upper().replace("PESSTO?", "pessto?")),
            ("EXPTIME", "0 +Inf"),
            ("FOV", "0 1"),
        ],
    )
    assert did not in _query(live_server, [("POS", pos), ("TIME", f"{t + 1} {t + 2}")])
    assert did not in _query(live_server, [("POS", pos), ("POL", "I")])
    assert did not in _query(live_server, [("POS", pos), ("DPTYPE", "spectrum")])
    # repeated POS are ORed
    far = "CIRCLE 10 10 0.001"
    assert did in _query(live_server, [("POS", far), ("POS", pos)])
    assert did not in _query(live_server, [("POS", far)])
    # RANGE and POLYGON around the image centre; RANGE across the whole RA circle
    ra, dec = float(img["s_ra"]), float(img["s_dec"])
    assert did in _query(live_server, [("POS", f"RANGE {ra - 0.01} {ra + 0.01} "
                                              f"{dec - 0.01} {dec + 0.01}")])
    assert did in _query(live_server, [("POS", f"RANGE 0 360 {dec - 0.01} +Inf")])
    assert did in _query(live_server, [("POS", f"POLYGON {ra - 0.01} {dec - 0.01} "
                                              f"{ra + 0.01} {dec - 0.01} {ra} "
                                              f"{dec + 0.01}")])


def test_footprint_overlap_equals_brute_force(live_server: LiveServer) -> None:
    with live_server.archive.engine.connect() as conn:
        for ra, dec, r in (
            (155.53, -64.7, 0.05),
            (201.3, -89.7, 1.0),
            (0.0, -12.5, 3.0),
        ):
            expected = {x[0] for x in conn.execute(text(
                "SELECT obs_publisher_did FROM ivoa.obscore WHERE dataproduct_type = "
                "'image' AND s_region && scircle(spoint(radians(:ra), radians(:dec)), "
                "radians(:r))"), {"ra": ra, "dec": dec, "r": r})}
            got = set(_query(live_server, [("POS", f"CIRCLE {ra} {dec} {r}")]))
            assert got == expected


@pytest.mark.parametrize("params,name", [
    ([("POS", "CIRCLE 10 95 1")], "POS"), ([("POS", "BOX 1 2 3 4")], "POS"),
    ([("POS", "POLYGON 1 2 3 4")], "POS"), ([("BAND", "5e-7 4e-7")], "BAND"),
    ([("TIME", "abc")], "TIME"), ([("CALIB", "x")], "CALIB"), ([("POL", "Z")], "POL"),
    ([("MAXREC", "1"), ("MAXREC", "2")], "MAXREC"),
])
def test_errors_name_the_parameter(
    live_server: LiveServer, params: list[tuple[str, str]], name: str
) -> None:
    r = live_server.get("/sia2/query", params=params)
    assert r.status_code == 400
    doc = strict_votable(r.content)
    status = next(i for i in doc.resources[0].infos if i.name == "QUERY_STATUS")
    assert status.value == "ERROR" and status.content.startswith("UsageFault:")
    assert name in status.content


def test_csv_error_is_text(live_server: LiveServer) -> None:
    r = live_server.get("/sia2/query?RESPONSEFORMAT=csv")
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("text/plain")
    assert r.text.startswith("UsageFault:") and "RESPONSEFORMAT" in r.text


def test_stilts_sia2(live_server: LiveServer) -> None:
    out = subprocess.run(
        [
            "stilts",
            "cone",
            f"serviceurl={live_server.url}/sia2/query",
            "servicetype=sia2",
            "lon=155.53",
            "lat=-64.7",
            "radius=0.1",
            "ofmt=csv",
            "out=-",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "obs_publisher_did" in out.stdout.splitlines()[0]


def test_capabilities_are_siblings(live_server: LiveServer) -> None:
    caps = live_server.get("/sia2/capabilities").text
    assert 'standardID="ivo://ivoa.net/std/SIA#query-2.0"' in caps
    assert f"{live_server.url}/sia2/query" in caps
    assert "<vosi:available>true" in live_server.get("/sia2/availability").text


def test_coordinate_helpers_accept_pyvo_exponents(live_server: LiveServer) -> None:
    ids = _query(live_server, [("POS", "CIRCLE 1.5553e+02 -6.47e+01 1e-01")])
    assert ids
    assert SkyCoord(155.53, -64.7, unit="deg")  # the same place, for the reader


def test_post_multipart_and_cones_wider_than_a_hemisphere(live_server: LiveServer
                                                          ) -> None:
    import requests

    with live_server.archive.engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM ivoa.obscore WHERE "
                                  "dataproduct_type = 'image' AND s_region IS NOT "
                                  "NULL")).scalar_one()
    wide = requests.post(live_server.url + "/sia2/query",
                         files={"POS": (None, "CIRCLE 10 10 100")}, timeout=60)
    narrow = requests.post(live_server.url + "/sia2/query",
                           data={"pos": "CIRCLE 190 -10 80"}, timeout=60)
    whole = requests.post(live_server.url + "/sia2/query",
                          data={"POS": "CIRCLE 0 0 180"}, timeout=60)
    ids = [{str(x) for x in strict_votable(r.content).get_first_table()
            .array["obs_publisher_did"]} for r in (wide, narrow, whole)]
    assert len(ids[2]) == total
    assert ids[0] | ids[1] == ids[2]  # a cone and its complement cover the sky
