"""Simple Cone Search 1.03 at /scs: pyvo, STILTS, error documents, access filter."""

from __future__ import annotations

import subprocess

import pytest
import pyvo
from astropy.coordinates import SkyCoord
from sqlalchemy import text

from tests.conftest import LiveServer
from tests.service.vocheck import SCS_UCD1, query_status, strict_votable


def test_pyvo_cone_across_ra_zero(live_server: LiveServer) -> None:
    scs = pyvo.dal.SCSService(live_server.url + "/scs")
    res = scs.search(pos=SkyCoord(0.0001, -12.5, unit="deg"), radius=0.01)
    assert len(res) > 0
    for rec in res:
        assert rec.pos.separation(SkyCoord(0.0001, -12.5, unit="deg")).deg <= 0.01
        assert rec.id.startswith("ivo://pessto.ia2.inaf.it/pessto?")
    dist = [float(d) for d in res["distance"]]
    assert dist == sorted(dist)


def test_cone_matches_database(live_server: LiveServer) -> None:
    with live_server.archive.engine.connect() as conn:
        expected = {r[0] for r in conn.execute(text(
            "SELECT publisher_did FROM pessto.products WHERE "
            "spoint(radians(ra), radians(dec)) <-> spoint(radians(201.3), "
            "radians(-89.7)) <= radians(2.0)"))}
    r = live_server.get("/scs", params={"RA": "201.3", "DEC": "-89.7", "SR": "2",
                                        "VERB": "3"})
    assert r.status_code == 200
    table = strict_votable(r.content, SCS_UCD1).get_first_table()
    assert {str(x) for x in table.array["obs_publisher_did"]} == expected
    assert expected


@pytest.mark.parametrize("verb,ncols", [("1", 4), ("2", 15), ("3", 25)])
def test_verbosity(live_server: LiveServer, verb: str, ncols: int) -> None:
    r = live_server.get(f"/scs?RA=0&DEC=0&SR=0&VERB={verb}")
    table = strict_votable(r.content, SCS_UCD1).get_first_table()
    assert len(table.fields) == ncols
    ucds = [f.ucd for f in table.fields]
    assert ucds.count("ID_MAIN") == ucds.count("POS_EQ_RA_MAIN") == 1
    assert len(table.array) == 0  # SR=0: metadata, no rows


def test_maxrec_overflow(live_server: LiveServer) -> None:
    r = live_server.get("/scs?RA=201.3&DEC=-89.7&SR=5&MAXREC=2&dummy=ignore-me")
    doc = strict_votable(r.content, SCS_UCD1)
    assert len(doc.get_first_table().array) == 2
    assert query_status(doc) == ["OK", "OVERFLOW"]


@pytest.mark.parametrize("query,name", [
    ("DEC=0&SR=1", "RA"), ("RA=1&DEC=91&SR=1", "DEC"), ("RA=1&DEC=0&SR=-1", "SR"),
    ("RA=abc&DEC=0&SR=1", "RA"), ("RA=1&DEC=0&SR=181", "SR"),
    ("RA=1&DEC=0&SR=1&VERB=7", "VERB"), ("RA=1&RA=2&DEC=0&SR=1", "RA"),
    ("RA=1&DEC=0&SR=1&MAXREC=-3", "MAXREC"),
])
def test_errors_are_scs_error_documents(live_server: LiveServer, query: str,
                                        name: str) -> None:
    r = live_server.get("/scs?" + query)
    assert r.status_code == 200  # SCS 1.03 §2: the error is in the VOTable
    doc = strict_votable(r.content, SCS_UCD1)
    err = [i for i in doc.infos if i.name == "Error"]
    assert len(err) == 1 and name in err[0].value
    assert not list(doc.iter_tables())  # no TABLE: TOPCAT would read it first


def test_stilts_shows_the_error_message(live_server: LiveServer) -> None:
    import subprocess

    out = subprocess.run(
        ["stilts", "cone", f"serviceurl={live_server.url}/scs?", "lon=10", "lat=0",
         "radius=181", "ofmt=csv", "out=-"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "parameter SR=181" in out.stdout + out.stderr, out.stdout + out.stderr


def test_pyvo_reads_the_error_message(live_server: LiveServer) -> None:
    scs = pyvo.dal.SCSService(live_server.url + "/scs")
    with pytest.raises(pyvo.dal.DALQueryError, match="parameter SR=181"):
        scs.search(pos=(10.0, 0.0), radius=181.0)


def test_proprietary_products_are_hidden(live_server: LiveServer) -> None:
    with live_server.archive.engine.connect() as conn:
        hidden = conn.execute(text(
            "SELECT archive.publisher_did(p.product_id, v.version_no), v.ra, v.dec "
            "FROM archive.product p JOIN archive.version v USING (product_id) "
            "WHERE v.is_current AND v.ra IS NOT NULL AND NOT archive.visible("
            "p.release_date) LIMIT 5")).all()
    assert hidden
    for did, ra, dec in hidden:
        r = live_server.get(f"/scs?RA={ra}&DEC={dec}&SR=0.001")
        ids = {str(x) for x in strict_votable(r.content, SCS_UCD1).get_first_table()
               .array["obs_publisher_did"]}
        assert did not in ids


def test_stilts_cone(live_server: LiveServer, tmp_path: object) -> None:
    out = subprocess.run(
        ["stilts", "cone", f"serviceurl={live_server.url}/scs?", "servicetype=cone",
         "lon=201.3", "lat=-89.7", "radius=1", "ofmt=csv", "out=-"],
        capture_output=True, text=True, timeout=120, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("obs_publisher_did,ra,dec")
    assert len(lines) > 1


def test_capabilities_and_availability(live_server: LiveServer) -> None:
    caps = live_server.get("/scs/capabilities")
    assert caps.status_code == 200 and "ivo://ivoa.net/std/ConeSearch" in caps.text
    assert "<maxSR>180</maxSR>" in caps.text
    avail = live_server.get("/scs/availability")
    assert "<vosi:available>true</vosi:available>" in avail.text


def test_large_result_is_streamed_whole(live_server: LiveServer) -> None:
    """MAXREC above the buffered limit goes through a server-side cursor."""
    with live_server.archive.engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM pessto.products "
                              "WHERE ra IS NOT NULL")).scalar_one()
    r = live_server.get("/scs?RA=10&DEC=10&SR=180&MAXREC=60000&VERB=1")
    doc = strict_votable(r.content, SCS_UCD1)
    assert len(doc.get_first_table().array) == n
    assert query_status(doc) == ["OK"]
