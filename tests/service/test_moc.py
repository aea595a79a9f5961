"""The coverage MOC (/moc) and the previews."""

from __future__ import annotations

import io

import numpy as np
import requests
from astropy import units as u
from astropy.io import fits
from mocpy import MOC
from sqlalchemy import text

from tests.conftest import LiveServer
from vo_archive.vo.moc import to_ascii


def test_moc_fits_json_ascii_agree_and_cover_public_products(live_server: LiveServer
                                                              ) -> None:
    r = live_server.get("/moc")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/fits"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    with fits.open(io.BytesIO(r.content)) as h:
        hdr = h[1].header
        assert (hdr["MOCVERS"], hdr["MOCDIM"], hdr["ORDERING"], hdr["COORDSYS"],
                hdr["MOCORD_S"]) == ("2.0", "SPACE", "NUNIQ", "C", 12)
        assert "PIXTYPE" not in hdr and hdr["TFORM1"] == "1J"
    moc = MOC.from_fits(io.BytesIO(r.content))
    js = live_server.get("/moc.json").json()
    assert js["12"] is not None
    assert MOC.from_json({k: v for k, v in js.items() if v}) == moc
    txt = live_server.get("/moc.txt").text
    assert MOC.from_string(txt.strip(), format="ascii") == moc
    with live_server.archive.engine.connect() as conn:
        shown = conn.execute(text("SELECT ra, dec FROM pessto.products "
                                  "WHERE ra IS NOT NULL")).all()
    ra, dec = np.array(shown).T
    assert moc.contains_lonlat(ra * u.deg, dec * u.deg).all()


def test_moc_ascii_folds_ranges() -> None:
    assert (
        to_ascii({1: [1, 2, 4], 2: [12, 13, 14, 21]}, 8) == b"1/1-2 4 2/12-14 21 8/\n"
    )


def test_previews(live_server: LiveServer) -> None:
    with live_server.archive.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT DISTINCT ON (mode) product_id, version_no FROM pessto.products "
            "WHERE product_type IN ('prereduced', 'telluric_corrected_1d') "
            "ORDER BY mode, product_id")).all()
    assert len(rows) == 2
    for pid, vno in rows:
        url = f"{live_server.url}/products/{pid}/versions/{vno}/preview.png"
        first = requests.get(url, timeout=60)
        assert first.status_code == 200 and first.content[:4] == b"\x89PNG"
        again = requests.get(url, headers={"If-None-Match": first.headers["ETag"]},
                             timeout=60)
        assert again.status_code == 304
    # anonymous: the same 401 as for a proprietary product (no existence oracle)
    assert live_server.get("/products/999999/versions/1/preview.png"
                           ).status_code == 401
