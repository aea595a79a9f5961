"""Proof of the access rule through the VO services: SCS, SIA 1/2, SSA (query and
getData), TAP (sync and async, joins, aggregates, TAP_UPLOAD, escalation attempts),
DataLink, previews and MOC. Anonymous callers never see, count, preview or download
a proprietary product; members do.
"""

from __future__ import annotations

import io
import re
import time
from typing import Any

import pytest
import requests
from astropy.io.votable import parse_single_table
from astropy.table import Table

from tests.auth_fixtures import AccessSite, access_site  # noqa: F401


def _req(site: AccessSite, method: str, path: str, who: str | None = None,
         **kw: Any) -> requests.Response:
    headers = dict(kw.pop("headers", {}))
    if who is not None:
        headers.update(getattr(site.accounts, who).bearer)
    return requests.request(method, site.server.url + path, headers=headers,
                            timeout=120, **kw)


def _dids_in(body: str, dids: frozenset[str]) -> set[str]:
    return {d for d in dids if re.search(re.escape(d) + r"(?![0-9])", body)}


def _hidden_far_from_public(site: AccessSite) -> tuple[float, float, str]:
    """A hidden product position at least 0.5° from every public one."""
    import math

    def sep(a: tuple[float, float], b: tuple[float, float]) -> float:
        ra1, d1, ra2, d2 = map(math.radians, (*a, *b))
        c = (math.sin(d1) * math.sin(d2)
             + math.cos(d1) * math.cos(d2) * math.cos(ra1 - ra2))
        return math.degrees(math.acos(max(-1.0, min(1.0, c))))

    for ra, dec, did in site.hidden.positions:
        if all(sep((ra, dec), p) > 0.5 for p in site.hidden.visible_positions):
            return ra, dec, did
    pytest.fail("no hidden product far from the public ones")


# -- positional DAL services ---------------------------------------------------------

@pytest.mark.parametrize("service", ["scs", "siap", "sia2", "ssap"])
def test_positional_searches(access_site: AccessSite, service: str) -> None:
    h = access_site.hidden
    seen_member: set[str] = set()
    for ra, dec, _ in h.positions[:: max(1, len(h.positions) // 4)]:
        path, params = {
            "scs": ("/scs", {"RA": ra, "DEC": dec, "SR": 3}),
            "siap": ("/siap", {"POS": f"{ra},{dec}", "SIZE": 6}),
            "sia2": ("/sia2/query", {"POS": f"CIRCLE {ra} {dec} 3"}),
            "ssap": ("/ssap", {"REQUEST": "queryData", "POS": f"{ra},{dec}",
                               "SIZE": 6}),
        }[service]
        anon = _req(access_site, "GET", path, params=params)
        assert anon.status_code == 200, anon.text[:300]
        assert not _dids_in(anon.text, h.dids), f"{service} shows hidden products"
        for name in h.filenames:
            assert name not in anon.text
        member = _req(access_site, "GET", path, "member", params=params)
        assert member.status_code == 200
        seen_member |= _dids_in(member.text, h.dids)
        # an account without roles is anonymous in scope
        outsider = _req(access_site, "GET", path, "outsider", params=params)
        assert not _dids_in(outsider.text, h.dids)
    assert seen_member, f"a member sees proprietary products through {service}"


def test_unconstrained_queries_count_only_public_rows(access_site: AccessSite) -> None:
    h = access_site.hidden
    for path, params in (("/sia2/query", {"MAXREC": "100000"}),
                         ("/ssap", {"REQUEST": "queryData", "MAXREC": "100000"})):
        anon = parse_single_table(io.BytesIO(_req(access_site, "GET", path,
                                                  params=params).content)).to_table()
        member = parse_single_table(io.BytesIO(_req(
            access_site, "GET", path, "member", params=params).content)).to_table()
        assert len(member) > len(anon), path
        text = "\n".join(str(v) for row in anon for v in row)
        assert not _dids_in(text, h.dids)


def test_ssa_getdata(access_site: AccessSite) -> None:
    h = access_site.hidden
    member = _req(access_site, "GET", "/ssap", "member",
                  params={"REQUEST": "queryData", "MAXREC": "100000"})
    spectra = _dids_in(member.text, h.dids)
    assert spectra
    did = sorted(spectra)[0]
    anon = _req(access_site, "GET", "/ssap", params={"REQUEST": "getData",
                                                     "PUBDID": did})
    assert anon.status_code == 401, anon.status_code  # signing in may show it
    assert not anon.content.startswith(b"SIMPLE")
    got = _req(access_site, "GET", "/ssap", "member",
               params={"REQUEST": "getData", "PUBDID": did})
    assert got.status_code == 200


# -- TAP ---------------------------------------------------------------------------

def _tap(site: AccessSite, query: str, who: str | None = None, **extra: Any
         ) -> requests.Response:
    data = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query, **extra}
    files = extra.pop("files", None)
    return _req(site, "POST", "/tap/sync", who, data=data, files=files)


def _rows(resp: requests.Response) -> Table:
    assert resp.status_code == 200, resp.text[:500]
    return parse_single_table(io.BytesIO(resp.content)).to_table()


def test_tap_rows_counts_joins_and_aggregates(access_site: AccessSite) -> None:
    h = access_site.hidden
    public_current = len(h.visible_ids)
    for who, expect in ((None, public_current), ("outsider", public_current),
                        ("member", h.total)):
        t = _rows(_tap(access_site, "SELECT COUNT(*) AS n FROM ivoa.obscore", who))
        assert int(t["n"][0]) == expect, who
        t = _rows(_tap(access_site, "SELECT COUNT(*) AS n FROM pessto.products", who))
        assert int(t["n"][0]) == expect, who
    queries = [
        "SELECT obs_publisher_did FROM ivoa.obscore",
        "SELECT o.obs_publisher_did, v.filename FROM ivoa.obscore AS o "
        "JOIN pessto.versions AS v ON v.publisher_did = o.obs_publisher_did",
        "SELECT p.publisher_did, r.name FROM pessto.products AS p "
        "JOIN pessto.runs AS r ON r.run_id = p.run_id",
        "SELECT r.name, COUNT(*) AS n FROM pessto.runs AS r LEFT OUTER JOIN "
        "pessto.products AS p ON p.run_id = r.run_id GROUP BY r.name",
        "SELECT t.name, t.ra, t.dec FROM pessto.targets AS t",
        "SELECT pv.ref_filename, v.filename FROM pessto.provenance AS pv "
        "JOIN pessto.versions AS v ON v.version_id = pv.version_id",
        "SELECT calib_level, COUNT(*) AS n, MAX(obs_publisher_did) AS last_did "
        "FROM ivoa.obscore GROUP BY calib_level",
        "SELECT obs_publisher_did FROM ivoa.obscore WHERE obs_publisher_did IN "
        "(SELECT publisher_did FROM pessto.versions)",
    ]
    for q in queries:
        anon = _tap(access_site, q)
        assert anon.status_code == 200, (q, anon.text[:300])
        assert not _dids_in(anon.text, h.dids), q
        for secret in (*h.run_names, *h.target_names):
            assert not re.search(rf">{re.escape(secret)}<", anon.text), (q, secret)
        member = _tap(access_site, q, "member")
        assert member.status_code == 200
    member_runs = _tap(access_site, "SELECT name FROM pessto.runs", "member").text
    assert all(f">{r}<" in member_runs for r in h.run_names)


@pytest.mark.parametrize("query", [
    "SELECT * FROM archive.product",
    "SELECT * FROM archive.account",
    "SELECT * FROM archive.token",
    "SELECT current_setting('vo_archive.proprietary') FROM ivoa.obscore",
    "SELECT set_config('vo_archive.proprietary', 'on', false) FROM ivoa.obscore",
    "SELECT TOP 1 * FROM ivoa.obscore; SET vo_archive.proprietary = 'on'",
    "SELECT obs_id FROM ivoa.obscore WHERE 1=1 OR archive.visible(NULL) = 1",
    "SELECT * FROM uws.job",
])
def test_tap_escalation_attempts_fail(access_site: AccessSite, query: str) -> None:
    r = _tap(access_site, query)
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
    assert not _dids_in(r.text, access_site.hidden.dids)
    assert "pva_" not in r.text and "scrypt$" not in r.text
    if r.status_code == 200:
        assert 'value="ERROR"' in r.text or "QUERY_STATUS" in r.text
    # and the session is not left escalated for the next anonymous query
    n = _rows(_tap(access_site, "SELECT COUNT(*) AS n FROM ivoa.obscore"))
    assert int(n["n"][0]) == len(access_site.hidden.visible_ids)


def test_tap_upload_join(access_site: AccessSite) -> None:
    h = access_site.hidden
    dids = sorted(h.dids)[:20] + sorted(h.visible_dids)[:5]
    t = Table({"did": dids})
    buf = io.BytesIO()
    t.write(buf, format="votable")
    q = ("SELECT o.obs_publisher_did FROM TAP_UPLOAD.mine AS m "
         "JOIN ivoa.obscore AS o ON o.obs_publisher_did = m.did")
    files = {"mine": ("mine.xml", buf.getvalue(), "application/x-votable+xml")}
    anon = _req(access_site, "POST", "/tap/sync", data={
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": q, "UPLOAD": "mine,param:mine"},
        files=files)
    rows = _rows(anon)
    got = {str(v) for v in rows["obs_publisher_did"]}
    assert not got & h.dids and got, "uploaded ids match public rows only"
    member = _req(access_site, "POST", "/tap/sync", "member", data={
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": q, "UPLOAD": "mine,param:mine"},
        files=files)
    assert {str(v) for v in _rows(member)["obs_publisher_did"]} & h.dids


def _async(site: AccessSite, query: str, who: str | None) -> str:
    r = _req(site, "POST", "/tap/async", who, allow_redirects=False,
             data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query,
                   "PHASE": "RUN"})
    assert r.status_code == 303, r.text[:300]
    job = r.headers["Location"]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        doc = requests.get(job, params={"WAIT": "5"}, timeout=60,
                           headers=getattr(site.accounts, who).bearer if who else {}
                           ).text
        if not re.search(r"<uws:phase>(PENDING|QUEUED|EXECUTING)<", doc):
            assert "<uws:phase>COMPLETED<" in doc, doc[:1000]
            return job
        time.sleep(0.2)
    pytest.fail("async job did not finish")


def test_tap_async_scope_and_ownership(access_site: AccessSite) -> None:
    h = access_site.hidden
    q = "SELECT obs_publisher_did FROM ivoa.obscore"
    anon_job = _async(access_site, q, None)
    body = requests.get(anon_job + "/results/result", timeout=60).text
    assert _dids_in(body, h.visible_dids) and not _dids_in(body, h.dids)
    member_job = _async(access_site, q, "member")
    path = member_job.removeprefix(access_site.server.url)
    body = _req(access_site, "GET", path + "/results/result", "member").text
    assert _dids_in(body, h.dids), "the worker ran the job in the member's scope"
    for who in (None, "reducer", "outsider"):
        for child in ("", "/results/result", "/parameters", "/phase", "/error"):
            r = _req(access_site, "GET", path + child, who)
            assert r.status_code in (401, 403), (who, child, r.status_code)
            assert not _dids_in(r.text, h.dids)
    r = _req(access_site, "POST", path + "/phase", None, data={"PHASE": "ABORT"},
             allow_redirects=False)
    assert r.status_code in (401, 403)
    r = _req(access_site, "DELETE", path, "reducer", allow_redirects=False)
    assert r.status_code in (401, 403)
    assert _req(access_site, "GET", path, "member").status_code == 200
    # the job list shows each caller its own jobs only
    listing = _req(access_site, "GET", "/tap/async", "reducer").text
    assert path.rsplit("/", 1)[1] not in listing


# -- DataLink, previews, MOC ---------------------------------------------------------

def test_datalink(access_site: AccessSite) -> None:
    h = access_site.hidden
    did = sorted(h.dids)[0]
    alone = _req(access_site, "GET", "/datalink/links", params={"ID": did})
    assert alone.status_code == 401 and b"/products/" not in alone.content
    # with a public dataset: its links, and an error row for the hidden one
    public = sorted(h.visible_dids)[0]
    anon = _rows_dl(_req(access_site, "GET", "/datalink/links",
                         params=[("ID", did), ("ID", public)]))
    mine = [r for r in anon if str(r["ID"]) == did]
    assert len(mine) == 1
    assert all(not str(r["access_url"]).strip() or "--" in str(r["access_url"])
               for r in mine), "no link to a proprietary file"
    assert str(mine[0]["error_message"]).startswith("NotFoundFault")
    member = _rows_dl(_req(access_site, "GET", "/datalink/links", "member",
                           params={"ID": did}))
    this = [r for r in member if str(r["semantics"]) == "#this"]
    assert this and str(this[0]["access_url"]).startswith("http")


def _rows_dl(resp: requests.Response) -> Table:
    assert resp.status_code == 200, resp.text[:300]
    return parse_single_table(io.BytesIO(resp.content)).to_table()


def test_previews(access_site: AccessSite) -> None:
    previews = 0
    for pid in sorted(access_site.hidden.product_ids)[:12]:
        path = f"/products/{pid}/versions/1/preview.png"
        anon = _req(access_site, "GET", path)
        assert anon.status_code == 401 and not anon.content.startswith(b"\x89PNG")
        member = _req(access_site, "GET", path, "member")
        if member.status_code == 200:
            assert member.content.startswith(b"\x89PNG")
            previews += 1
    assert previews, "members get previews of proprietary products"


def test_moc_covers_public_products_only(access_site: AccessSite) -> None:
    from astropy import units as u
    from mocpy import MOC

    ra, dec, _ = _hidden_far_from_public(access_site)
    anon = MOC.from_json(_req(access_site, "GET", "/moc.json").json())
    member = MOC.from_json(_req(access_site, "GET", "/moc.json", "member").json())
    assert not anon.contains_lonlat(ra * u.deg, dec * u.deg)[0]
    assert member.contains_lonlat(ra * u.deg, dec * u.deg)[0]
    # and the FITS MOC (a separate cache entry) agrees
    fits_anon = _req(access_site, "GET", "/moc")
    assert fits_anon.status_code == 200
    m = MOC.from_fits(io.BytesIO(fits_anon.content))
    assert not m.contains_lonlat(ra * u.deg, dec * u.deg)[0]
