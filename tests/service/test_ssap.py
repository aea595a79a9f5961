"""SSA 1.1 at /ssap: pyvo SSAService, STILTS, getData (FITS and VOTable), errors."""

from __future__ import annotations

import io
import subprocess

import numpy as np
import pytest
import pyvo
import requests
from astropy.io import fits
from astropy.time import Time, TimeDelta
from sqlalchemy import text

from tests.conftest import LiveServer
from tests.service.vocheck import query_status, strict_votable


def _spectrum(live_server: LiveServer) -> dict[str, object]:
    with live_server.archive.engine.connect() as conn:
        return dict(conn.execute(text(
            "SELECT p.publisher_did, p.ra, p.dec, p.em_min, p.em_max, p.mjd_obs, "
            "p.object, p.filename FROM pessto.products p WHERE p.product_type = "
            "'telluric_corrected_1d' ORDER BY p.product_id LIMIT 1")).mappings().one())


def _getdataset(rec: pyvo.dal.ssa.SSARecord) -> bytes:
    """Fetch what pyvo's ``getdataset`` fetches: the first ``#this`` DataLink row.

    (``getdataset`` itself widens ``#this`` through the IVOA vocabulary, which
    it downloads from the network; the tests run offline.)
    """
    this = next(rec.getdatalink().bysemantics("#this", include_narrower=False))
    r = requests.get(this.access_url, timeout=60)
    r.raise_for_status()
    return r.content


def test_pyvo_ssa_with_band_time_and_getdata(live_server: LiveServer) -> None:
    s = _spectrum(live_server)
    ssa = pyvo.dal.SSAService(live_server.url + "/ssap")
    t = Time(s["mjd_obs"], format="mjd")
    dt = TimeDelta(0.01, format="jd")
    found = {}
    for fmt, mime in (("all", "application/fits"), ("native", "application/fits"),
                      ("votable", "application/x-votable+xml")):
        res = ssa.search(pos=(s["ra"], s["dec"]), diameter=0.01,
                         band=(float(s["em_min"]) + 1e-8, float(s["em_max"]) - 1e-8),
                         time=Time([(t - dt).isot, (t + dt).isot], format="isot"),
                         format=fmt)
        dids = [str(r["ssa_pubDID"]) for r in res]
        assert len(dids) == len(set(dids))  # one row per spectrum
        recs = [r for r in res if str(r["ssa_pubDID"]) == s["publisher_did"]]
        assert len(recs) == 1 and recs[0].format == mime
        found[mime] = recs[0]
    rec = found["application/fits"]
    assert abs(rec.ra - s["ra"]) < 1e-6 and rec.title == s["filename"]
    # pyvo's SSARecord.dateobs reads ssa:DataID.Date
    assert rec.dateobs is not None
    assert abs(rec.dateobs.mjd - float(s["mjd_obs"])) < 1.0
    # pyvo's getdataset fetches the first #this link of the row's DataLink
    # document: it must be the format the row names
    with fits.open(io.BytesIO(_getdataset(rec))) as h:
        wave = h[1].data["WAVE"][0]
    vot_rec = found["application/x-votable+xml"]
    body = _getdataset(vot_rec)
    spec = strict_votable(body).get_first_table()
    assert np.allclose(spec.array["WAVE"], wave)
    assert spec.get_field_by_id("FLUX").utype == "spec:Spectrum.Data.FluxAxis.Value"
    with fits.open(io.BytesIO(requests.get(rec.acref, timeout=60).content)) as h:
        assert np.allclose(h[1].data["WAVE"][0], wave)


def test_metadata(live_server: LiveServer) -> None:
    r = live_server.get("/ssap?REQUEST=queryData&FORMAT=metadata&POS=bad")
    doc = strict_votable(r.content)
    params = {p.name for p in doc.resources[0].params}
    assert {
        "INPUT:POS",
        "INPUT:SIZE",
        "INPUT:BAND",
        "INPUT:TIME",
        "INPUT:FORMAT",
    } <= params
    utypes = {f.utype for f in doc.get_first_table().fields}
    utypes |= {p.utype for p in doc.resources[0].params}
    for must in ("Access.Reference", "Access.Format", "Dataset.DataModel",
                 "Dataset.Length", "DataID.Title", "Curation.Publisher",
                 "Char.SpatialAxis.Coverage.Location.Value",
                 "Char.SpatialAxis.Coverage.Bounds.Extent",
                 "Char.TimeAxis.Coverage.Location.Value",
                 "Char.SpectralAxis.Coverage.Location.Value",
                 "Char.SpectralAxis.Coverage.Bounds.Extent", "Target.Pos"):
        assert "ssa:" + must in utypes
    assert len(doc.get_first_table().array) == 0


def test_targetname_and_unconstrained_overflow(live_server: LiveServer) -> None:
    s = _spectrum(live_server)
    name = str(s["object"]).upper().replace("-", " ")
    r = live_server.get("/ssap", params={"TARGETNAME": name, "FORMAT": "native"})
    table = strict_votable(r.content).get_first_table()
    assert s["publisher_did"] in {str(x) for x in table.array["ssa_pubDID"]}
    assert {str(x) for x in table.array["ssa_targname"]} == {s["object"]}
    r = live_server.get("/ssap?MAXREC=3")
    doc = strict_votable(r.content)
    assert len(doc.get_first_table().array) == 3
    assert query_status(doc) == ["OK", "OVERFLOW"]


@pytest.mark.parametrize("query,name", [
    ("POS=10", "POS"), ("POS=10,20;GALACTIC", "POS"), ("POS=10,95", "POS"),
    ("BAND=V", "BAND"), ("BAND=6e-7/4e-7", "BAND"), ("TIME=yesterday", "TIME"),
    ("TIME=2015-01-01/2014-01-01", "TIME"), ("SIZE=-1&POS=1,1", "SIZE"),
    ("FORMAT=wibble", "FORMAT"), ("REQUEST=getSpectrum", "REQUEST"),
    ("REQUEST=getData", "PUBDID"),
])
def test_errors(live_server: LiveServer, query: str, name: str) -> None:
    r = live_server.get("/ssap?" + query)
    assert r.status_code == 400
    status = strict_votable(r.content).resources[0].infos[0]
    assert status.value == "ERROR" and name in status.content


def test_getdata_unknown_dataset(live_server: LiveServer) -> None:
    r = live_server.get("/ssap?REQUEST=getData&FORMAT=votable&PUBDID=ivo://x/y?1/v1")
    assert r.status_code == 404
    assert strict_votable(r.content).resources[0].infos[0].content.startswith(
        "NotFoundFault")


def test_stilts_ssa(live_server: LiveServer) -> None:
    s = _spectrum(live_server)
    out = subprocess.run(
        ["stilts", "cone", f"serviceurl={live_server.url}/ssap?", "servicetype=ssa",
         f"lon={s['ra']}", f"lat={s['dec']}", "radius=0.01", "ofmt=csv", "out=-"],
        capture_output=True, text=True, timeout=120, check=True)
    assert s["publisher_did"] in out.stdout


def test_capabilities(live_server: LiveServer) -> None:
    caps = live_server.get("/ssap/capabilities").text
    assert 'standardID="ivo://ivoa.net/std/SSA"' in caps
    assert "<complianceLevel>query</complianceLevel>" in caps


def test_cone_results_equal_a_brute_force_scan(live_server: LiveServer) -> None:
    with live_server.archive.engine.connect() as conn:
        centres = conn.execute(text(
            "SELECT ra, dec FROM pessto.targets ORDER BY target_id LIMIT 6")).all()
    checked = 0
    for ra, dec in centres:
        for size in (0.002, 0.5, 3.0):
            with live_server.archive.engine.connect() as conn:
                expected = set(conn.execute(text(
                    "SELECT publisher_did FROM pessto.products WHERE mode = "
                    "'spectroscopy' AND product_type IN ('fluxcal_1d', "
                    "'telluric_corrected_1d', 'extracted_1d') AND degrees("
                    "spoint(radians(ra), radians(dec)) <-> spoint(radians(:ra), "
                    "radians(:dec))) <= :r"), {"ra": ra, "dec": dec, "r": size / 2}
                ).scalars())
            r = live_server.get(f"/ssap?REQUEST=queryData&POS={ra},{dec}"
                                f"&SIZE={size}&FORMAT=fits&MAXREC=10000")
            table = strict_votable(r.content).get_first_table()
            got = {str(x) for x in table.array[table.get_field_by_id_or_name(
                next(f.ID or f.name for f in table.fields
                     if f.utype and f.utype.lower() == "ssa:curation.publisherdid")
            ).name]}
            assert got == expected
            checked += len(expected)
    assert checked > 0
