"""SODA 1.0 sync (/soda/sync): cutouts through pyvo, errors, access rule, votlint."""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import pyvo
import requests
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from sqlalchemy import text

from tests.auth_fixtures import AccessSite, access_site  # noqa: F401
from tests.conftest import LiveServer
from tests.schemata import assert_valid
from tests.service.vocheck import strict_votable
from tests.service.votlint import votlint
from vo_archive.spectra import read_spectrum
from vo_archive.vo.vosi import AVAILABILITY_NS, CAPABILITIES_NS

SODA = "ivo://ivoa.net/std/SODA#sync-1.0"


def _product(live_server: LiveServer, where: str, public: bool = True
             ) -> dict[str, object]:
    """Return a product version of the demo archive (its DID and coverage)."""
    vis = "p.release_date <= now()" if public else \
        "NOT coalesce(p.release_date <= now(), false)"
    with live_server.archive.engine.connect() as conn:
        row = conn.execute(text(
            "SELECT archive.publisher_did(v.product_id, v.version_no) AS did, "
            "v.product_id, v.version_no, v.ra, v.dec, v.naxis1, v.naxis2, "
            "v.em_min, v.em_max, v.mjd_obs, v.mjd_end, v.sha256, p.product_type "
            "FROM archive.version v JOIN archive.product p USING (product_id) "
            f"WHERE {vis} AND {where} ORDER BY v.version_id LIMIT 1")
        ).mappings().first()
    if row is None:
        pytest.skip(f"the demo archive has no product with {where}")
    return dict(row)


IMAGE = "p.mode = 'imaging' AND v.header->>'CTYPE1' = 'RA---TAN' AND v.naxis1 > 50"


def _links(live_server: LiveServer, did: str) -> pyvo.dal.adhoc.DatalinkResults:
    return pyvo.dal.adhoc.DatalinkResults.from_result_url(
        f"{live_server.url}/datalink/links?ID={quote(did, safe='')}")


def _soda(live_server: LiveServer, did: str, headers: dict[str, str] | None = None,
          **params: str | list[str]) -> requests.Response:
    return live_server.get("/soda/sync", params={"ID": did, **params},
                           headers=headers or {})


def _fits(body: bytes) -> fits.HDUList:
    return fits.open(io.BytesIO(body))


def _wcs(header: fits.Header) -> WCS:
    with warnings.catch_warnings():  # the demo headers say RADECSYS, as ESO's do
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def _pixscale_deg(wcs: WCS) -> float:
    return float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))))


def test_image_circle_through_pyvo(live_server: LiveServer) -> None:
    img = _product(live_server, IMAGE)
    links = _links(live_server, str(img["did"]))
    proc = links.get_first_proc()
    assert proc.semantics == "#cutout"
    soda = links.get_adhocservice_by_id(proc.service_def)
    assert {p.name: p.value for p in soda.params}["standardID"] == SODA
    params = {p.name: p for p in soda.groups[0].entries}
    assert params["ID"].value == img["did"]
    ra_max, dec_max, r_max = (
        float(x) for x in np.ravel(params["CIRCLE"].values.max))
    assert math.isclose(ra_max, float(img["ra"]), abs_tol=1e-3)  # type: ignore[arg-type]
    assert math.isclose(dec_max, float(img["dec"]), abs_tol=1e-3)  # type: ignore[arg-type]
    # a circle off the centre, well inside the image
    full_wcs_scale = r_max / math.hypot(int(img["naxis1"]), int(img["naxis2"])) * 2
    cdec = float(img["dec"])  # type: ignore[arg-type]
    ra = float(img["ra"]) + 10 * full_wcs_scale / math.cos(math.radians(cdec))  # type: ignore[arg-type]
    dec = cdec - 8 * full_wcs_scale
    radius = 12 * full_wcs_scale
    stream = proc.processed(circle=[ra, dec, radius] * u.deg)
    with _fits(stream.read()) as hdul:
        wcs = _wcs(hdul[0].header)
        ny, nx = hdul[0].data.shape
        scale = _pixscale_deg(wcs)
        assert hdul[0].header["OBJECT"]  # the other keywords are kept
    centre = wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2)
    off = math.hypot((float(centre[0]) - ra) * math.cos(math.radians(dec)),
                     float(centre[1]) - dec)
    assert off < 1.0 * scale, (off / scale, nx, ny)
    for n in (nx, ny):  # the cutout spans the circle's diameter
        assert abs(n * scale - 2 * radius) <= 2.5 * scale, (n, 2 * radius / scale)
    assert nx < int(img["naxis1"]) and ny < int(img["naxis2"])  # type: ignore[call-overload]


def test_image_polygon_and_range(live_server: LiveServer) -> None:
    img = _product(live_server, IMAGE)
    ra0, dec0 = float(img["ra"]), float(img["dec"])  # type: ignore[arg-type]
    d = 20 / 3600
    c = math.cos(math.radians(dec0))
    corners = [(ra0 - d / c, dec0 - d), (ra0 + d / c, dec0 - d),
               (ra0 + d / c, dec0 + d), (ra0 - d / c, dec0 + d)]
    poly = " ".join(f"{a!r} {b!r}" for a, b in corners)
    for params in ({"POLYGON": poly}, {"POS": f"POLYGON {poly}"},
                   {"POS": f"RANGE {ra0 - d / c!r} {ra0 + d / c!r} {dec0 - d!r} "
                           f"{dec0 + d!r}"}):
        r = _soda(live_server, str(img["did"]), **params)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "application/fits"
        with _fits(r.content) as hdul:
            wcs = _wcs(hdul[0].header)
            ny, nx = hdul[0].data.shape
        scale = _pixscale_deg(wcs)
        for n in (nx, ny):
            assert abs(n * scale - 2 * d) <= 2.5 * scale, (params, n, 2 * d / scale)
        for x, y in ((0, 0), (nx - 1, ny - 1)):  # the corners are inside the box
            a, b = wcs.pixel_to_world_values(x, y)
            assert abs(float(b) - dec0) <= d + scale
            assert abs(float(a) - ra0) * c <= d + scale


def _spectrum_band(live_server: LiveServer, where: str) -> None:
    spec = _product(live_server, where)
    lo, hi = float(spec["em_min"]), float(spec["em_max"])  # type: ignore[arg-type]
    band = (lo + 0.3 * (hi - lo), lo + 0.6 * (hi - lo))
    links = _links(live_server, str(spec["did"]))
    # spectra also offer #proc (classify); bysemantics would fetch the vocabulary
    proc = next(row for row in links if row.semantics == "#cutout")
    soda = links.get_adhocservice_by_id(proc.service_def)
    params = {p.name: p for p in soda.groups[0].entries}
    assert float(params["BAND"].values.min) == pytest.approx(lo)
    assert float(params["BAND"].values.max) == pytest.approx(hi)
    assert "CIRCLE" not in params
    body = proc.processed(band=band * u.m).read()
    path = Path(live_server.archive.settings.home) / f"cut-{spec['product_id']}.fits"
    path.write_bytes(body)
    cut = read_spectrum(path)
    assert cut.wave.size > 10
    assert cut.wave.min() >= band[0] * 1e10 - 1e-3
    assert cut.wave.max() <= band[1] * 1e10 + 1e-3
    # the band is covered to within one pixel at both ends
    step = float(np.median(np.diff(cut.wave)))
    assert cut.wave.min() - band[0] * 1e10 < step * 1.01
    assert band[1] * 1e10 - cut.wave.max() < step * 1.01
    with fits.open(path) as hdul:
        assert "SODA cutout" in str(hdul[0].header.get("HISTORY", ""))
    did = str(spec["did"])
    mid = (lo + hi) / 2
    r = _soda(live_server, did, BAND=f"{mid!r} {mid!r}")  # narrower than a pixel
    assert r.status_code == 200
    path.write_bytes(r.content)
    assert read_spectrum(path).wave.size == 1
    assert _soda(live_server, did, BAND=f"{hi * 1.1!r} +Inf").status_code == 204
    # a spectrum is cut by wavelength only: a region gives all of it or nothing
    ra, dec = float(spec["ra"]), float(spec["dec"])  # type: ignore[arg-type]
    whole = _soda(live_server, did, CIRCLE=f"{ra!r} {dec!r} 0.01")
    assert whole.status_code == 200
    assert hashlib.sha256(whole.content).hexdigest() == spec["sha256"]
    far = _soda(live_server, did, CIRCLE=f"{(ra + 90) % 360!r} {dec / 2!r} 0.01")
    assert far.status_code == 204


def test_phase3_spectrum_band_through_pyvo(live_server: LiveServer) -> None:
    _spectrum_band(live_server, "p.product_type IN ('fluxcal_1d', "
                   "'telluric_corrected_1d') AND v.filename LIKE '%\\_sb%'")


def test_pipeline_1d_spectrum_band(live_server: LiveServer) -> None:
    _spectrum_band(live_server, "p.product_type IN ('fluxcal_1d', 'extracted_1d') "
                   "AND v.filename NOT LIKE '%\\_sb%'")


def test_errors(live_server: LiveServer) -> None:
    img = _product(live_server, IMAGE)
    did = str(img["did"])
    ra, dec = float(img["ra"]), float(img["dec"])  # type: ignore[arg-type]

    def fails(status: int, code: str, params: dict[str, str | list[str]]) -> None:
        r = live_server.get("/soda/sync", params=params)
        assert r.status_code == status, (params, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("text/plain"), params
        assert r.text.startswith(f"{code}: "), (params, r.text)

    fails(400, "UsageError", {"CIRCLE": f"{ra} {dec} 0.01"})
    # as for /products: an anonymous caller cannot tell unknown from proprietary
    fails(401, "AuthenticationError",
          {"ID": "ivo://pessto.ia2.inaf.it/pessto?999999/v1"})
    fails(404, "NotFoundFault", {"ID": "ivo://elsewhere/x?1"})
    fails(400, "UsageError", {"ID": did, "CIRCLE": f"{ra} {dec}"})
    fails(400, "UsageError", {"ID": did, "CIRCLE": "ten 20 0.1"})
    fails(400, "UsageError", {"ID": did, "CIRCLE": f"{ra} 95 0.1"})
    fails(400, "UsageError", {"ID": did, "POS": "BOX 1 2 3 4"})
    fails(400, "UsageError", {"ID": did, "BAND": "6e-7 4e-7"})
    fails(400, "UsageError", {"ID": did, "BAND": "-2e-7 -1e-7"})
    fails(400, "UsageError", {"ID": did, "POL": "Z"})
    fails(400, "UsageError", {"ID": did, "CIRCLE": f"{ra} {dec} 0.01",
                              "POLYGON": "1 1 2 1 2 2"})
    fails(400, "UsageError", {"ID": did, "RESPONSEFORMAT": "text/csv"})
    fails(400, "MultiValuedParamNotSupported", {"ID": [did, did]})
    fails(400, "MultiValuedParamNotSupported",
          {"ID": did, "CIRCLE": [f"{ra} {dec} 0.01", f"{ra} {dec} 0.02"]})


def test_no_overlap_is_204_and_overlap_the_whole_file(live_server: LiveServer) -> None:
    img = _product(live_server, IMAGE)
    did = str(img["did"])
    ra, dec = float(img["ra"]), float(img["dec"])  # type: ignore[arg-type]
    far = (ra + 180) % 360
    t0, t1 = float(img["mjd_obs"]), float(img["mjd_end"])  # type: ignore[arg-type]
    for params in ({"CIRCLE": f"{far} {-dec} 0.1"},
                   {"CIRCLE": f"{ra} {min(dec + 1, 90)} 0.01"},
                   {"POS": f"RANGE {far} {far + 0.01 if far < 359 else 360} 0 1"},
                   {"TIME": f"{t1 + 1} {t1 + 2}"}, {"POL": ["Q", "U"]},
                   {"BAND": "1e-3 2e-3"} if img["em_min"] is not None
                   else {"POL": "V"}):
        r = _soda(live_server, did, **params)
        assert r.status_code == 204, (params, r.status_code, r.text[:200])
        assert r.content == b""
    for params in ({"TIME": f"{t0 - 1} {t1 + 1}"}, {"POL": ["I", "Q"]},
                   {"TIME": f"{t0} +Inf", "POL": "I"}, {}):
        r = _soda(live_server, did, **params)
        assert r.status_code == 200, (params, r.text[:200])
        assert hashlib.sha256(r.content).hexdigest() == img["sha256"], params


def test_access_rule_is_the_files_one(access_site: AccessSite) -> None:
    server, accounts = access_site.server, access_site.accounts
    img = _product(server, IMAGE, public=False)
    did = str(img["did"])
    assert did in access_site.hidden.dids
    circle = f"{img['ra']} {img['dec']} {10 / 3600}"
    anonymous = _soda(server, did, CIRCLE=circle)
    direct = server.get(f"/products/{img['product_id']}/versions/{img['version_no']}")
    assert anonymous.status_code == direct.status_code == 401
    for header in ("Content-Type", "WWW-Authenticate", "Vary", "Cache-Control"):
        assert anonymous.headers.get(header) == direct.headers.get(header), header
    assert anonymous.text.startswith("AuthenticationError: ")
    outsider = _soda(server, did, accounts.outsider.bearer, CIRCLE=circle)
    assert outsider.status_code == 404 and outsider.text.startswith("NotFoundFault: ")
    member = _soda(server, did, accounts.member.bearer, CIRCLE=circle)
    assert member.status_code == 200, member.text
    with _fits(member.content) as hdul:
        assert hdul[0].data.shape[0] < int(img["naxis2"])  # type: ignore[call-overload]
    # the member's DataLink document offers the cutout; the anonymous one does not
    links = server.get("/datalink/links", params={"ID": did},
                       headers=accounts.member.bearer)
    assert "#cutout" in links.text and SODA in links.text
    assert SODA not in server.get("/datalink/links", params={"ID": did}).text
    # the authenticated twin serves members as well
    twin = server.get("/auth/soda/sync", params={"ID": did, "CIRCLE": circle},
                      headers=accounts.member.bearer)
    assert twin.status_code == 200
    with _fits(twin.content) as a, _fits(member.content) as b:  # CHECKSUM dates differ
        assert np.array_equal(a[0].data, b[0].data)
        assert a[0].header["CRPIX1"] == b[0].header["CRPIX1"]


def test_datalink_document_with_descriptors_passes_votlint(live_server: LiveServer
                                                           ) -> None:
    img = _product(live_server, IMAGE)
    spec = _product(live_server, "p.product_type = 'fluxcal_1d'")
    r = live_server.get("/datalink/links", params=[("ID", str(img["did"])),
                                                   ("ID", str(spec["did"])),
                                                   ("ID", str(img["did"]))])
    assert r.status_code == 200
    doc = strict_votable(r.content)
    descriptors = [res for res in doc.resources if res.utype == "adhoc:service"
                   and any(p.name == "standardID" and p.value == SODA
                           for p in res.params)]
    assert len(descriptors) == 2  # one per dataset, the repeated ID shares it
    assert votlint(r.content) == []  # units and UCDs checked too
    assert r.text.count('semantics') >= 1
    table = doc.get_first_table().to_table()
    cutouts = [row for row in table if row["semantics"] == "#cutout"]
    assert len(cutouts) == 3
    ids = {res.ID for res in descriptors}
    assert {str(row["service_def"]) for row in cutouts} == ids


def test_capabilities_and_availability(live_server: LiveServer) -> None:
    caps = live_server.get("/soda/capabilities")
    assert caps.status_code == 200
    assert SODA in caps.text and f"{live_server.url}/soda/sync" in caps.text
    assert_valid(caps.content, CAPABILITIES_NS)
    avail = live_server.get("/soda/availability")
    assert avail.status_code == 200 and "<vosi:available>true" in avail.text
    assert_valid(avail.content, AVAILABILITY_NS)


def test_images_without_sky_coordinates_offer_no_cutout(live_server: LiveServer
                                                        ) -> None:
    bias = _product(live_server, "p.mode = 'imaging' AND v.header->>'CTYPE1' IS NULL "
                    "AND v.naxis1 > 0")
    links = live_server.get("/datalink/links", params={"ID": str(bias["did"])})
    assert links.status_code == 200 and "#cutout" not in links.text
    r = _soda(live_server, str(bias["did"]), CIRCLE=f"{bias['ra'] or 10} "
              f"{bias['dec'] or 10} 0.01")
    assert r.status_code == 400
    assert r.text.startswith("UsageError: ") and "WCS" in r.text
