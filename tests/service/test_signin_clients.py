"""Members use their access in the clients they use: STILTS as Debian ships it
(credentials only after a 401, through the authenticated twin) and pyvo's
AuthSession (HTTP Basic and bearer tokens; every URL of an answer reached with no
URL registered by hand) through TAP, SCS, SIA2, SSA, DataLink and getdataset."""

from __future__ import annotations

import hashlib
import io
import subprocess
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import pyvo
import requests
from astropy.io import fits
from pyvo.auth import AuthSession
from pyvo.dal import DALQueryError
from sqlalchemy import text

from tests.auth_fixtures import AccessSite, access_site  # noqa: F401

TOKEN_METHOD = "ivo://ivoa.net/sso#token"  # noqa: S105 - an IVOA identifier


# -- STILTS (Java's Authenticator: credentials only after a 401) -----------------------

def _stilts(site: AccessSite, *args: str, user: bool = True
            ) -> subprocess.CompletedProcess[str]:
    m = site.accounts.member
    props = [f"-Dstar.basicauth.user={m.name}",
             f"-Dstar.basicauth.password={m.password}"] if user else []
    return subprocess.run(["stilts", *props, *args], capture_output=True, text=True,
                          timeout=300, check=False)


def _hidden_table_file(site: AccessSite) -> tuple[int, int, str, int]:
    """A proprietary binary-table spectrum: (product, version, sha256, rows)."""
    with site.server.archive.engine.connect() as conn:
        pid, vno, sha, key = conn.execute(text(
            "SELECT p.product_id, v.version_no, v.sha256, v.storage_key "
            "FROM archive.product p JOIN archive.version v USING (product_id) "
            "WHERE NOT coalesce(p.release_date <= now(), false) "
            "AND v.filename LIKE '%\\_sb.fits' ORDER BY 1 LIMIT 1")).one()
    from vo_archive.ingest.storage import Storage

    path = Storage(site.server.archive.settings.storage_dir).path_of(key)
    with fits.open(path) as hdul:
        rows = len(hdul[1].data)
    return pid, vno, sha, rows


def test_stilts_tapquery_on_the_twin(access_site: AccessSite) -> None:
    h = access_site.hidden
    url = access_site.server.url
    args = ("tapquery", f"tapurl={url}/auth/tap",
            "adql=SELECT obs_publisher_did FROM ivoa.obscore", "ofmt=csv", "out=-")
    r = _stilts(access_site, *args)
    assert r.returncode == 0, r.stderr[-2000:]
    dids = set(r.stdout.split()[1:])
    assert h.dids <= dids and len(dids) == h.total
    # the same in async mode (job URLs in the twin)
    r = _stilts(access_site, *args, "sync=false")
    assert r.returncode == 0, r.stderr[-2000:]
    assert h.dids <= set(r.stdout.split()[1:])
    anon = _stilts(access_site, *args, user=False)
    assert anon.returncode != 0 and "401" in anon.stderr + anon.stdout


def test_stilts_cone_on_the_twin_finds_proprietary_products(
        access_site: AccessSite) -> None:
    ra, dec, did = access_site.hidden.positions[0]
    url = access_site.server.url
    args = ("cone", f"serviceurl={url}/auth/scs?", "servicetype=cone", f"lon={ra}",
            f"lat={dec}", "radius=0.01", "ofmt=csv", "out=-")
    r = _stilts(access_site, *args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert did in r.stdout
    assert f"{url}/auth/products/" in r.stdout  # its file, in the twin
    anon = _stilts(access_site, *args, user=False)
    assert did not in anon.stdout
    assert anon.returncode != 0 and "401" in anon.stderr + anon.stdout


def test_stilts_downloads_a_proprietary_file(access_site: AccessSite) -> None:
    pid, vno, _, rows = _hidden_table_file(access_site)
    url = f"{access_site.server.url}/auth/products/{pid}/versions/{vno}"
    r = _stilts(access_site, "tcopy", f"in={url}", "ifmt=fits", "ofmt=csv", "out=-")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(r.stdout.strip().splitlines()) == rows + 1
    anon = _stilts(access_site, "tcopy", f"in={url}", "ifmt=fits", "ofmt=csv",
                   "out=-", user=False)
    assert anon.returncode != 0


# -- pyvo AuthSession ------------------------------------------------------------------

def _basic(site: AccessSite) -> AuthSession:
    auth = AuthSession()
    auth.credentials.set_password(site.accounts.member.name,
                                  site.accounts.member.password)
    return auth


def _bearer(site: AccessSite) -> AuthSession:
    auth = AuthSession()
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {site.accounts.member.token}"
    auth.credentials.set(TOKEN_METHOD, s)
    return auth


CREDENTIALS: dict[str, Callable[[AccessSite], AuthSession]] = {
    "basic": _basic, "bearer": _bearer}

#: The terms of the IVOA datalink/core vocabulary that pyvo's getdataset() looks up
#: (pyvo downloads the vocabulary, and tests run without the internet).
DATALINK_CORE = {"terms": {
    "this": {"label": "This dataset", "narrower": []},
    "preview": {"label": "Preview", "narrower": ["preview-image", "preview-plot"]},
}}


@pytest.fixture(autouse=True)
def offline_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answer pyvo's request for the datalink/core vocabulary locally."""
    from pyvo.utils import vocabularies

    def get_vocabulary(name: str, force_update: bool = False) -> dict[str, Any]:
        assert name == "datalink/core", name
        return DATALINK_CORE

    monkeypatch.setattr(vocabularies, "get_vocabulary", get_vocabulary)


def _fetch(record: Any) -> bytes:
    data = record.getdataset(timeout=120)
    return bytes(data.read())


def _check_files(records: list[Any], shas: dict[str, str], did_key: str) -> int:
    """Download each record's dataset; compare with the archive's SHA-256."""
    n = 0
    for rec in records:
        did = str(rec[did_key])
        body = _fetch(rec)
        if did in shas:
            assert hashlib.sha256(body).hexdigest() == shas[did], did
        else:  # a spectrum as a VOTable (SSA getData)
            assert body.startswith((b"SIMPLE", b"<?xml")), body[:80]
        n += 1
    return n


def _capabilities(service_url: str) -> Any:
    from pyvo.io.vosi import parse_capabilities

    r = requests.get(service_url + "/capabilities", timeout=60)
    r.raise_for_status()
    with warnings.catch_warnings():
        # pyvo 1.10 knows neither the cs:ConeSearch type nor its elements; it
        # keeps the interfaces, which is all the session needs
        warnings.simplefilter("ignore")
        return parse_capabilities(io.BytesIO(r.content))


def _shas(site: AccessSite) -> dict[str, str]:
    with site.server.archive.engine.connect() as conn:
        return {str(d): str(s) for d, s in conn.execute(text(
            "SELECT archive.publisher_did(product_id, version_no), sha256 "
            "FROM archive.version"))}


@pytest.mark.parametrize("cred", sorted(CREDENTIALS))
def test_pyvo_tap_rows_and_files(access_site: AccessSite, cred: str) -> None:
    h = access_site.hidden
    auth = CREDENTIALS[cred](access_site)
    svc = pyvo.dal.TAPService(access_site.server.url + "/tap", session=auth)
    res = svc.run_sync("SELECT obs_publisher_did, access_url, access_format "
                       "FROM ivoa.obscore")
    dids = {str(d) for d in res["obs_publisher_did"]}
    assert h.dids <= dids and len(dids) == h.total
    hidden = [r for r in res if str(r["obs_publisher_did"]) in h.dids]
    assert _check_files(hidden[:6], _shas(access_site), "obs_publisher_did") == 6
    # an async job's URLs, and the files of its result
    job = svc.submit_job("SELECT TOP 3 obs_publisher_did, access_url, access_format "
                         "FROM ivoa.obscore WHERE obs_publisher_did IN ("
                         + ", ".join(f"'{d}'" for d in sorted(h.dids)[:3]) + ")")
    job.run()
    job.wait(timeout=120)
    job.raise_if_error()
    assert "/auth/tap/async/" in job.url
    result = job.fetch_result()
    assert len(result) == 3
    assert _check_files(list(result), _shas(access_site), "obs_publisher_did") == 3
    job.delete()


@pytest.mark.parametrize("cred", sorted(CREDENTIALS))
def test_pyvo_scs_sia2_ssa_rows_and_files(access_site: AccessSite, cred: str
                                          ) -> None:
    h = access_site.hidden
    base = access_site.server.url
    shas = _shas(access_site)
    auth = CREDENTIALS[cred](access_site)
    # pyvo's SCS and SSA classes read no capabilities: the session learns them
    # from the service's own document, or from any other service of the archive
    # (every document declares the archive's root as taking credentials)
    auth.update_from_capabilities(_capabilities(base + "/scs"))
    scs = pyvo.dal.SCSService(base + "/scs", session=auth)
    sia2 = pyvo.dal.SIA2Service(base + "/sia2", session=auth)
    ssa = pyvo.dal.SSAService(base + "/ssap", session=auth)
    found: dict[str, set[str]] = {"scs": set(), "sia2": set(), "ssa": set()}
    fetched = {"scs": 0, "sia2": 0, "ssa": 0}
    for ra, dec, _ in h.positions[:: max(1, len(h.positions) // 3)]:
        for name, results, key in (
                ("scs", scs.search((ra, dec), 0.05), "obs_publisher_did"),
                ("sia2", sia2.search(pos=(ra, dec, 0.05)), "obs_publisher_did"),
                ("ssa", ssa.search(pos=(ra, dec), diameter=0.1), "ssa_pubDID")):
            hidden = [r for r in results if str(r[key]) in h.dids]
            found[name] |= {str(r[key]) for r in hidden}
            fetched[name] += _check_files(hidden[:2], shas, key)
    for name in found:
        assert found[name] and fetched[name], (name, found, fetched)


@pytest.mark.parametrize("cred", sorted(CREDENTIALS))
def test_pyvo_datalink(access_site: AccessSite, cred: str) -> None:
    h = access_site.hidden
    shas = _shas(access_site)
    auth = CREDENTIALS[cred](access_site)
    sia2 = pyvo.dal.SIA2Service(access_site.server.url + "/sia2", session=auth)
    rec = next(r for ra, dec, _ in h.positions
               for r in sia2.search(pos=(ra, dec, 0.05))
               if str(r["obs_publisher_did"]) in h.dids)
    did = str(rec["obs_publisher_did"])
    links = rec.getdatalink()
    this = next(links.bysemantics("#this", include_narrower=False))
    assert this["link_auth"] == "true"
    body = bytes(this.getdataset(timeout=120).read())
    assert hashlib.sha256(body).hexdigest() == shas[did]
    preview = next(links.bysemantics("#preview", include_narrower=False))
    assert bytes(preview.getdataset(timeout=120).read()).startswith(b"\x89PNG")
    # the DataLink service on its own, for every hidden dataset
    dl = pyvo.dal.adhoc.DatalinkService(access_site.server.url + "/datalink/links",
                                        session=auth)
    for hid in sorted(h.dids)[:4]:
        got = dl.run_sync(hid)
        row = next(got.bysemantics("#this", include_narrower=False))
        assert row["error_message"] in (None, "") or not row["error_message"]
        data = bytes(row.getdataset(timeout=120).read())
        assert hashlib.sha256(data).hexdigest() == shas[hid]


def test_pyvo_anonymous_gets_none_and_sees_the_challenge(
        access_site: AccessSite) -> None:
    h = access_site.hidden
    base = access_site.server.url
    auth = AuthSession()  # no credentials
    tap = pyvo.dal.TAPService(base + "/tap", session=auth)
    dids = {str(d) for d in tap.run_sync(
        "SELECT obs_publisher_did FROM ivoa.obscore")["obs_publisher_did"]}
    assert not dids & h.dids and len(dids) == len(h.visible_ids)
    auth.update_from_capabilities(_capabilities(base + "/scs"))
    scs = pyvo.dal.SCSService(base + "/scs", session=auth)
    sia2 = pyvo.dal.SIA2Service(base + "/sia2", session=auth)
    for ra, dec, _ in h.positions[:: max(1, len(h.positions) // 3)]:
        assert not {str(r["obs_publisher_did"]) for r in scs.search((ra, dec), 0.05)
                    } & h.dids
        assert not {str(r["obs_publisher_did"])
                    for r in sia2.search(pos=(ra, dec, 0.05))} & h.dids
    dl = pyvo.dal.adhoc.DatalinkService(base + "/datalink/links", session=auth)
    with pytest.raises(DALQueryError) as err:
        dl.run_sync(sorted(h.dids)[0])
    assert "AuthorizationFault" in str(err.value)
    r = requests.get(base + "/datalink/links", params={"ID": sorted(h.dids)[0]},
                     timeout=60)
    assert r.status_code == 401
    assert any(c.startswith("ivoa_bearer ") for c in
               r.raw.headers.getlist("WWW-Authenticate"))
    # and the VOTable error document says why
    from astropy.io.votable import parse

    doc = parse(io.BytesIO(r.content))
    assert any(i.name == "QUERY_STATUS" and i.value == "ERROR"
               for i in doc.resources[0].infos)
