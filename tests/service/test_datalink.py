"""DataLink 1.1 at /datalink/links: every kind of link, errors, pyvo from results."""

from __future__ import annotations

import pyvo
import requests
from sqlalchemy import text

from tests.conftest import LiveServer
from tests.service.vocheck import strict_votable

AUTH = "ivo://pessto.ia2.inaf.it/pessto?"


def _links(live_server: LiveServer, *ids: str) -> list[dict[str, object]]:
    r = live_server.get("/datalink/links", params=[("ID", i) for i in ids])
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/x-votable+xml;content=datalink"
    doc = strict_votable(r.content)
    assert any(i.name == "standardID" and
               i.value == "ivo://ivoa.net/std/DataLink#links-1.1"
               for i in doc.resources[0].infos)
    table = doc.get_first_table().to_table()
    rows = [{k: (None if hasattr(row[k], "mask") and row[k] is not None and
                 getattr(row[k], "mask", False) else row[k]) for k in table.colnames}
            for row in table]
    for row in rows:  # exactly one of access_url, service_def, error_message
        assert sum(bool(row[k]) for k in ("access_url", "service_def",
                                          "error_message")) == 1
    return rows


def test_links_of_a_spectrum(live_server: LiveServer) -> None:
    with live_server.archive.engine.connect() as conn:
        pid, vno = conn.execute(text(
            "SELECT p.product_id, p.version_no FROM pessto.products p "
            "JOIN archive.version v USING (version_id) JOIN archive.provenance pv "
            "ON pv.version_id = v.version_id WHERE p.product_type = "
            "'telluric_corrected_1d' AND pv.relation = 'parent' LIMIT 1")).one()
    rows = _links(live_server, f"{AUTH}{pid}/v{vno}")
    sem = [str(r["semantics"]) for r in rows]
    assert sem.count("#this") == 2 and "#preview" in sem and "#progenitor" in sem
    this = [r for r in rows if r["semantics"] == "#this"]
    assert {str(r["content_type"]) for r in this} == {"application/fits",
                                                      "application/x-votable+xml"}
    for r in rows:
        if r["access_url"] and str(r["access_url"]).startswith(live_server.url):
            assert requests.head(str(r["access_url"]), timeout=60).status_code == 200
    # raw frames link to the ESO archive's DataLink service (not fetched here:
    # the tests run offline)
    raw = [r for r in rows if r["local_semantics"] == "PROV1"]
    assert raw and not raw[0]["error_message"]
    with live_server.archive.engine.connect() as conn:
        raw_name = conn.execute(text(
            "SELECT pv.ref_filename FROM pessto.products p JOIN archive.provenance pv "
            "ON pv.version_id = p.version_id WHERE p.product_id = :p "
            "AND pv.keyword = 'PROV1'"), {"p": pid}).scalar_one()
    dp_id = raw_name.removesuffix(".fits")
    assert str(raw[0]["access_url"]) == (
        "https://archive.eso.org/datalink/links?ID=ivo://eso.org/ID?" + dp_id)
    assert str(raw[0]["semantics"]) == "#progenitor"
    assert str(raw[0]["content_type"]).startswith("application/x-votable+xml")


def test_calibrations_versions_and_derivations(live_server: LiveServer) -> None:
    with live_server.archive.engine.connect() as conn:
        image = conn.execute(text(
            "SELECT p.product_id, p.version_no FROM pessto.products p JOIN "
            "pessto.provenance pv USING (version_id) WHERE pv.keyword = 'ZEROCOR' "
            "LIMIT 1")).one()
        bias = conn.execute(text(
            "SELECT p.product_id, p.version_no FROM pessto.products p WHERE filename = "
            "(SELECT ref_filename FROM pessto.provenance pv JOIN pessto.products q "
            "USING (version_id) WHERE q.product_id = :p AND keyword = 'ZEROCOR')"),
            {"p": image[0]}).one()
        multi = conn.execute(text(
            "SELECT product_id, min(version_no) FROM pessto.versions GROUP BY 1 "
            "HAVING count(*) > 1 LIMIT 1")).one()
    rows = _links(live_server, f"{AUTH}{image[0]}/v{image[1]}",
                  f"{AUTH}{bias[0]}/v{bias[1]}", f"{AUTH}{multi[0]}/v{multi[1]}")
    by_id: dict[str, list[str]] = {}
    for r in rows:
        by_id.setdefault(str(r["ID"]), []).append(str(r["semantics"]))
    assert list(by_id) == [
        f"{AUTH}{image[0]}/v{image[1]}",
        f"{AUTH}{bias[0]}/v{bias[1]}",
        f"{AUTH}{multi[0]}/v{multi[1]}",
    ]  # consecutive, in order
    assert "#bias" in by_id[f"{AUTH}{image[0]}/v{image[1]}"]
    assert "#derivation" in by_id[f"{AUTH}{bias[0]}/v{bias[1]}"]
    assert "#coderived" in by_id[f"{AUTH}{multi[0]}/v{multi[1]}"]


def test_unknown_and_hidden_ids_get_error_rows(live_server: LiveServer) -> None:
    with live_server.archive.engine.connect() as conn:
        hidden = conn.execute(text(
            "SELECT product_id FROM archive.product WHERE NOT archive.visible("
            "release_date) LIMIT 1")).scalar_one()
    rows = _links(live_server, "nonsense", f"{AUTH}{hidden}/v1")
    assert len(rows) == 2
    assert all(str(r["error_message"]).startswith("NotFoundFault") for r in rows)
    assert _links(live_server) == []  # no ID: an empty table


def test_datalink_from_ssa_results(live_server: LiveServer) -> None:
    res = pyvo.dal.SSAService(live_server.url + "/ssap").search(
        pos=(359.9995, -12.5), diameter=0.1, format="native")
    assert len(res) > 0
    links = next(res.iter_datalinks())
    assert "#preview" in [str(s) for s in links["semantics"]]
    png = next(str(u) for u, s in zip(links["access_url"], links["semantics"],
                                      strict=True) if str(s) == "#preview")
    assert requests.get(png, timeout=60).content[:4] == b"\x89PNG"


def test_bad_responseformat(live_server: LiveServer) -> None:
    r = live_server.get("/datalink/links?ID=x&RESPONSEFORMAT=fits")
    assert r.status_code == 400 and r.text.startswith("UsageFault")


def test_maxrec_truncates_between_ids(live_server: LiveServer) -> None:
    ids = [f"{AUTH}{pid}/v1" for pid in range(1, 8)]
    r = live_server.get("/datalink/links", params=[("ID", i) for i in ids] +
                        [("MAXREC", "4")])
    doc = strict_votable(r.content)
    got = [str(x) for x in doc.get_first_table().array["ID"]]
    assert got and len(set(got)) < len(ids)
    whole = _links(live_server, *sorted(set(got), key=got.index))
    assert [str(w["ID"]) for w in whole] == got  # every ID that appears is complete
    assert [i.value for i in doc.resources[0].infos
            if i.name == "QUERY_STATUS"] == ["OK", "OVERFLOW"]
