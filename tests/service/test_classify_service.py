"""The classification services over real HTTP, with the real job worker.

An archive holds two products made from real templates of the library: a
type Ia (SN 1994D at maximum) at z = 0.05, public, and a type II (SN 1999em,
ten days after maximum) at z = 0.03, proprietary. The worker classifies them
on arrival; the services answer for them and for uploads, and an anonymous
caller never sees the proprietary one's classification, whatever the path.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvo
import requests
from pyvo.io.uws import parse_job
from pyvo.io.vosi import parse_capabilities
from sqlalchemy import text

from classify.synth import template_spectrum
from classify.templates import load_library
from tests.auth_fixtures import Accounts, drop_accounts, make_accounts
from tests.classify_fixtures import (
    phase3_spectra,
    template_index,
    write_template_product,
)
from tests.conftest import Archive, LiveServer, start_server, stop_server
from tests.service.vocheck import query_status, strict_votable
from tests.tap_fixtures import start_worker, stop_worker

IA_Z, II_Z = 0.05, 0.03


@dataclass
class Site:
    """A served archive with two template products and a job worker."""

    server: LiveServer
    archive: Archive
    accounts: Accounts
    worker: subprocess.Popen[bytes]
    ia: tuple[int, int, str]  # product id, version id, DID
    ii: tuple[int, int, str]

    @property
    def url(self) -> str:
        """Return the server's base URL."""
        return self.server.url

    @property
    def member(self) -> dict[str, str]:
        """Return headers of a member (sees proprietary data)."""
        return self.accounts.member.bearer


@pytest.fixture(scope="module")
def site(make_archive: Callable[..., Archive], demo_files: list[Path],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    archive = make_archive()
    folder = tmp_path_factory.mktemp("template-products")
    sb = phase3_spectra(demo_files)
    ia = write_template_product(sb[0], folder, "sn1994D", 0.0, IA_Z)
    ii = write_template_product(sb[1], folder, "sn1999em", 10.0, II_Z)
    archive.ingest([ia, ii])
    ids = {}
    with archive.engine.begin() as conn:
        for path in (ia, ii):
            pid, vid, did = conn.execute(text(
                "SELECT v.product_id, v.version_id, archive.publisher_did("
                "v.product_id, v.version_no) FROM archive.version v "
                "WHERE v.filename = :f"), {"f": path.name}).one()
            ids[path] = (pid, vid, did)
        conn.execute(text(
            "UPDATE archive.product SET release_date = CASE WHEN product_id = :ia "
            "THEN now() - interval '1 day' END"), {"ia": ids[ia][0]})
    accounts = make_accounts(archive)
    server = start_server(archive, extra_args=("--job-workers", "0"))
    worker = start_worker(archive)
    s = Site(server, archive, accounts, worker, ids[ia], ids[ii])
    yield s
    stop_worker(s.worker)
    stop_server(server.process)
    drop_accounts(archive, accounts)


def stored(archive: Archive) -> dict[int, tuple[Any, ...]]:
    """Return the stored verdicts by version id."""
    with archive.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT version_id, sn_type, redshift, good, classifier_version, "
            "library_version FROM archive.classification")).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def wait_final(url: str, headers: dict[str, str] | None = None) -> bytes:
    """Wait for a UWS job to end; return its job document."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        r = requests.get(url, params={"WAIT": "10"}, headers=headers, timeout=30)
        job = parse_job(io.BytesIO(r.content))
        if job.phase in ("COMPLETED", "ERROR", "ABORTED"):
            return r.content
    raise AssertionError(f"job {url} did not finish")


def params_of(body: bytes) -> dict[str, Any]:
    """Return the PARAMs of a strictly valid classification VOTable."""
    vot = strict_votable(body)
    assert query_status(vot) == ["OK"]
    res = vot.resources[0]
    return {p.name: p.value for p in res.params}


def votlint(body: bytes, tmp_path: Path) -> None:
    """Check a VOTable with STILTS votlint (no errors, no warnings)."""
    path = tmp_path / "doc.vot"
    path.write_bytes(body)
    out = subprocess.run(["stilts", "votlint", f"votable={path}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def upload_text(sn: str, phase: float, z: float) -> bytes:
    """Return a template spectrum as two-column text (wavelength, flux)."""
    lib = load_library()
    spec = template_spectrum(lib, template_index(lib, sn, phase), z, snr=40, seed=3)
    return "\n".join(f"{w:.3f} {f:.6g}" for w, f in zip(
        spec.wave, spec.flux, strict=True)).encode()


# -- on arrival ---------------------------------------------------------------------

def test_ingested_spectra_are_classified_by_the_worker(site: Site) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = stored(site.archive)
        if site.ia[1] in found and site.ii[1] in found:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"not classified on arrival: {stored(site.archive)}")
    ia_type, ia_z, ia_good, classifier, library_version = found[site.ia[1]][:5]
    ii_type, ii_z, ii_good = found[site.ii[1]][:3]
    assert (ia_type, ia_good) == ("Ia", True) and abs(ia_z - IA_Z) < 0.01
    assert (ii_type, ii_good) == ("II", True) and abs(ii_z - II_Z) < 0.01
    assert library_version == load_library().version and classifier


def test_classify_pending_queues_nothing_when_all_are_classified(
        site: Site) -> None:
    env = {"VO_ARCHIVE_HOME": str(site.archive.settings.home),
           "VO_ARCHIVE_DSN": site.archive.settings.dsn or ""}
    out = subprocess.run([sys.executable, "-m", "vo_archive", "classify-pending"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    assert "queued 0 " in out.stdout, out.stdout


# -- sync -----------------------------------------------------------------------

@pytest.mark.parametrize("which", ["product_id", "did"])
def test_sync_by_id_is_a_valid_votable(site: Site, which: str, tmp_path: Path
                                       ) -> None:
    ident = str(site.ia[0]) if which == "product_id" else site.ia[2]
    r = requests.get(site.url + "/classify/sync", params={"ID": ident, "TOP": "5"},
                     timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/x-votable+xml")
    p = params_of(r.content)
    assert p["sn_type"] == "Ia" and p["good"] and abs(p["redshift"] - IA_Z) < 0.01
    assert p["ID"] == site.ia[2]
    table = strict_votable(r.content).get_first_table().to_table()
    assert len(table) == 5 and list(table["rank"]) == [1, 2, 3, 4, 5]
    assert table["rlap"][0] >= table["rlap"][-1]
    votlint(r.content, tmp_path)


def test_sync_upload_json_and_votable(site: Site, tmp_path: Path) -> None:
    data = upload_text("sn1994D", 0.0, 0.08)
    r = requests.post(site.url + "/classify/sync", files={"spectrum": (
        "sn.txt", data)}, data={"RESPONSEFORMAT": "json", "ZMAX": "0.3"}, timeout=60)
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["type"] == "Ia" and v["good"] and abs(v["z"] - 0.08) < 0.01
    assert v["matches"] and v["id"] == "sn.txt"
    r = requests.post(site.url + "/classify/sync", data=data, timeout=60,
                      headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    assert params_of(r.content)["sn_type"] == "Ia"
    votlint(r.content, tmp_path)


def test_noise_gets_no_good_match(site: Site, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    wave = np.linspace(3700, 9200, 1500)
    data = "\n".join(f"{w:.2f} {f:.5f}" for w, f in zip(
        wave, 1 + rng.normal(0, 0.1, wave.size), strict=True)).encode()
    r = requests.post(site.url + "/classify/sync", files={"f": ("noise.txt", data)},
                      timeout=60)
    assert r.status_code == 200, r.text
    p = params_of(r.content)
    assert not p["good"] and not p["sn_type"]
    infos = {i.name: i.value for i in strict_votable(r.content).resources[0].infos}
    assert infos["verdict"] == "no good match"
    votlint(r.content, tmp_path)


def _text_spectrum(wave: np.ndarray, flux: np.ndarray) -> bytes:
    return "\n".join(f"{w} {f}" for w, f in zip(wave, flux, strict=True)).encode()


_WAVE = np.linspace(3700, 9200, 800)
BAD_UPLOADS = {
    "not a spectrum": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "a table of words": b"name colour\nfoo red\nbar blue\n",
    "empty": b"",
    "NaNs": _text_spectrum(_WAVE, np.full(_WAVE.size, np.nan)),
    "wrong units (metres)": _text_spectrum(_WAVE * 1e-10, np.ones(_WAVE.size)),
    "a FITS image": b"SIMPLE  =                    T" + b" " * 2850,
}


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
def test_bad_uploads_get_a_votable_error(site: Site, name: str) -> None:
    r = requests.post(site.url + "/classify/sync", files={
        "spectrum": ("x.dat", BAD_UPLOADS[name])}, timeout=60)
    assert r.status_code == 400, (r.status_code, r.text)
    vot = strict_votable(r.content)
    assert query_status(vot) == ["ERROR"]
    message = vot.resources[0].infos[0].content
    assert message.startswith("UsageFault: ") and "Traceback" not in message


@pytest.mark.parametrize(("params", "word"), [
    ({"ZMIN": "0.5", "ZMAX": "0.1"}, "ZMIN"),
    ({"TOP": "0"}, "TOP"),
    ({"Z": "abc"}, "Z"),
    ({"RLAPMIN": "-1"}, "RLAPMIN"),
    ({"RESPONSEFORMAT": "csv"}, "RESPONSEFORMAT"),
    ({"ID": "ivo://elsewhere/x?1/v1"}, "ID"),
    ({"ID": "99999999"}, "no product"),
    ({}, "give a spectrum"),
])
def test_bad_parameters(site: Site, params: dict[str, str], word: str) -> None:
    params = {"ID": str(site.ia[0]), **params} if params and "ID" not in params and \
        params != {} else params
    r = requests.get(site.url + "/classify/sync", params=params, timeout=60)
    assert r.status_code in (400, 404), r.text
    vot = strict_votable(r.content)
    assert query_status(vot) == ["ERROR"] and word in vot.resources[0].infos[0].content


def test_an_id_and_an_upload_together_are_refused(site: Site) -> None:
    r = requests.post(site.url + "/classify/sync", data={"ID": str(site.ia[0])},
                      files={"f": ("a.txt", upload_text("sn1994D", 0.0, 0.05))},
                      timeout=60)
    assert r.status_code == 400 and b"not both" in r.content


# -- access ------------------------------------------------------------------------

def test_anonymous_sees_no_proprietary_classification_sync_and_stored(
        site: Site) -> None:
    for path in ("/classify/sync", "/classify/stored"):
        for ident in (str(site.ii[0]), site.ii[2]):
            r = requests.get(site.url + path, params={"ID": ident}, timeout=60)
            assert r.status_code == 404, (path, r.text)
            assert b"II" not in r.content.replace(b"ivo://", b"")
            r = requests.get(site.url + path, params={"ID": ident}, timeout=60,
                             headers=site.member)
            assert r.status_code == 200, (path, r.text)
            assert params_of(r.content)["sn_type"] == "II"
    r = requests.get(site.url + "/classify/stored", timeout=60, params={
        "ID": site.ia[2], "RESPONSEFORMAT": "json"})
    assert r.status_code == 200 and r.json()["type"] == "Ia"
    assert r.json()["matches"][0]["rlap"] > 5


def _tap(site: Site, query: str, headers: dict[str, str] | None = None
         ) -> list[tuple[Any, ...]]:
    r = requests.post(site.url + "/tap/sync", data={
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query}, headers=headers,
        timeout=60)
    assert r.status_code == 200, r.text
    table = strict_votable(r.content).get_first_table().to_table()
    return [tuple(row) for row in table]


def test_tap_publishes_classifications_joinable_and_proprietary(site: Site) -> None:
    query = ("SELECT c.product_id, c.sn_type, c.redshift, p.filename, t.name, "
             "m.template FROM pessto.classifications AS c "
             "JOIN pessto.products AS p ON p.version_id = c.version_id "
             "JOIN pessto.targets AS t ON t.target_id = c.target_id "
             "JOIN pessto.classification_matches AS m ON "
             "m.classification_id = c.classification_id "
             "WHERE m.rank = 1 AND c.is_latest = 'true' ORDER BY c.product_id")
    anonymous = _tap(site, query)
    member = _tap(site, query, site.member)
    assert [(r[0], r[1]) for r in anonymous] == [(site.ia[0], "Ia")]
    assert sorted((r[0], r[1]) for r in member) == sorted(
        [(site.ia[0], "Ia"), (site.ii[0], "II")])
    for table in ("pessto.classifications", "pessto.classification_matches"):
        rows = _tap(site, f"SELECT * FROM {table}", site.member)
        assert rows, table
    every = _tap(site, "SELECT publisher_did, good, is_latest, classified_at, "
                 "classifier_version FROM pessto.classifications")
    assert [r[0] for r in every] == [site.ia[2]]
    r = requests.get(site.url + "/tap/tables/pessto.classifications", timeout=60)
    assert r.status_code == 200 and b"src.redshift" in r.content
    names = {row[0] for row in _tap(
        site, "SELECT table_name FROM TAP_SCHEMA.tables")}
    assert {"pessto.classifications", "pessto.classification_matches"} <= names


def _links(site: Site, did: str, headers: dict[str, str] | None = None
           ) -> pyvo.dal.adhoc.DatalinkResults:
    session = requests.Session()
    session.headers.update(headers or {})
    r = session.get(site.url + "/datalink/links", params={"ID": did}, timeout=60)
    strict_votable(r.content)
    return pyvo.dal.adhoc.DatalinkResults.from_result_url(
        r.url, session=session)


def test_datalink_offers_the_classifier_and_the_stored_classification(
        site: Site) -> None:
    links = _links(site, site.ia[2])
    proc = [r for r in links if r.semantics == "#proc"]
    assert len(proc) == 1 and proc[0].service_def == "classify"
    stored_link = [r for r in links if r["local_semantics"] == "classification"]
    assert len(stored_link) == 1 and "Ia" in stored_link[0].description
    r = requests.get(stored_link[0].access_url, timeout=60)
    assert params_of(r.content)["sn_type"] == "Ia"
    # pyvo calls the service descriptor with the row's ID
    body = proc[0].process(TOP="3").read()
    p = params_of(body)
    assert p["sn_type"] == "Ia" and p["ID"] == site.ia[2]
    assert len(strict_votable(body).get_first_table().array) == 3


def test_datalink_hides_a_proprietary_classification(site: Site) -> None:
    # an anonymous caller asking only for hidden datasets is challenged (401),
    # and the answer names no classification
    r = requests.get(site.url + "/datalink/links", params={"ID": site.ii[2]},
                     timeout=60)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    assert b"II" not in r.content and b"classif" not in r.content.lower()
    member = _links(site, site.ii[2], site.member)
    descriptions = [r.description for r in member
                    if r["local_semantics"] == "classification"]
    assert len(descriptions) == 1 and "II" in descriptions[0]


# -- async (UWS) ---------------------------------------------------------------------

def test_uws_job_with_an_upload_through_pyvo(site: Site, tmp_path: Path) -> None:
    r = requests.post(site.url + "/classify/async", data={"PHASE": "RUN",
                      "RUNID": "upload-test", "ZMAX": "0.5"},
                      files={"spec": ("sn.txt", upload_text("sn1994D", 0.0, 0.1))},
                      allow_redirects=False, timeout=60)
    assert r.status_code == 303
    job_url = r.headers["Location"]
    job = parse_job(io.BytesIO(wait_final(job_url)))
    assert job.phase == "COMPLETED" and job.runid == "upload-test"
    assert job.results[0].id_ == "result"
    # pyvo's UWS job client reads it like a TAP job: result and deletion
    pjob = pyvo.dal.AsyncTAPJob(job_url)
    assert pjob.phase == "COMPLETED"
    body = requests.get(pjob.result_uri, timeout=60).content
    p = params_of(body)
    assert p["sn_type"] == "Ia" and abs(p["redshift"] - 0.1) < 0.01
    votlint(body, tmp_path)
    pjob.delete()
    assert requests.get(job_url, timeout=30).status_code == 404


def test_uws_job_by_id_follows_the_access_rule(site: Site) -> None:
    outcomes = {}
    for who, headers in (("anonymous", None), ("member", site.member)):
        r = requests.post(site.url + "/classify/async", headers=headers, data={
            "ID": site.ii[2], "PHASE": "RUN", "RESPONSEFORMAT": "json"},
            allow_redirects=False, timeout=60)
        job_url = r.headers["Location"]
        job = parse_job(io.BytesIO(wait_final(job_url, headers)))
        outcomes[who] = job.phase
        if job.phase == "COMPLETED":
            res = requests.get(job_url + "/results/result", headers=headers,
                               timeout=60)
            assert res.json()["type"] == "II"
            anon = requests.get(job_url + "/results/result", timeout=60)
            assert anon.status_code in (401, 403) and b"II" not in anon.content
        else:
            err = requests.get(job_url + "/error", timeout=60)
            assert b"NotFoundFault" in err.content and b"II" not in err.content
    assert outcomes == {"anonymous": "ERROR", "member": "COMPLETED"}


def test_uws_job_with_a_bad_upload_ends_in_error(site: Site) -> None:
    r = requests.post(site.url + "/classify/async", data={"PHASE": "RUN"},
                      files={"spec": ("x.txt", b"nothing here")},
                      allow_redirects=False, timeout=60)
    job = parse_job(io.BytesIO(wait_final(r.headers["Location"])))
    assert job.phase == "ERROR"
    err = requests.get(r.headers["Location"] + "/error", timeout=60)
    vot = strict_votable(err.content)
    assert "UsageFault" in vot.resources[0].infos[0].content


def test_a_job_survives_a_worker_restart(site: Site) -> None:
    stop_worker(site.worker)
    r = requests.post(site.url + "/classify/async", data={
        "ID": str(site.ia[0]), "PHASE": "RUN", "RESPONSEFORMAT": "json"},
        allow_redirects=False, timeout=60)
    job_url = r.headers["Location"]
    time.sleep(1.5)
    assert requests.get(job_url + "/phase", timeout=30).text.strip() == "QUEUED"
    site.worker = start_worker(site.archive)
    job = parse_job(io.BytesIO(wait_final(job_url)))
    assert job.phase == "COMPLETED"
    res = requests.get(job_url + "/results/result", timeout=60)
    assert res.json()["type"] == "Ia"


# -- VOSI, counters, documentation -------------------------------------------------

def test_capabilities_and_availability(site: Site) -> None:
    r = requests.get(site.url + "/classify/capabilities", timeout=30)
    caps = parse_capabilities(io.BytesIO(r.content))
    ids = {c.standardid for c in caps}
    assert {"ivo://pessto.ia2.inaf.it/std/classify#sync-1.0",
            "ivo://pessto.ia2.inaf.it/std/classify#async-1.0",
            "ivo://ivoa.net/std/VOSI#availability"} <= ids
    sync = next(c for c in caps if c.standardid.endswith("#sync-1.0"))
    assert sync.interfaces[0].accessurls[0].content == site.url + "/classify/sync"
    assert list(sync.interfaces[0].querytypes) == ["GET"]
    r = requests.get(site.url + "/classify/availability", timeout=30)
    assert b"<vosi:available>true</vosi:available>" in r.content


def test_statistics_count_types_per_run_and_month(site: Site) -> None:
    anon = requests.get(site.url + "/statistics", params={"FORMAT": "json"},
                        timeout=30).json()
    member = requests.get(site.url + "/statistics", params={"FORMAT": "json"},
                          headers=site.member, timeout=30).json()
    assert anon["total"] == {"Ia": 1}
    assert member["total"] == {"Ia": 1, "II": 1}
    assert sum(r["total"] for r in member["by_run"]) == 2
    assert sum(m["total"] for m in member["by_month"]) == 2
    assert all(len(m["month"]) == 7 for m in member["by_month"])
    html = requests.get(site.url + "/statistics", timeout=30)
    assert html.status_code == 200 and "text/html" in html.headers["Content-Type"]
    assert 'id="by-run"' in html.text and "<th>Ia</th>" in html.text
    assert "<th>II</th>" not in html.text
    landing = requests.get(site.url + "/", timeout=30).text
    assert "/classify" in landing and 'href="/statistics"' in landing


def test_openapi_describes_the_services(site: Site) -> None:
    spec = requests.get(site.url + "/openapi.json", timeout=30).json()
    sync = spec["paths"]["/classify/sync"]
    names = {p["name"] for p in sync["get"]["parameters"]}
    assert {"ID", "ZMIN", "Z", "TYPES", "RLAPMIN", "TOP"} <= names
    assert "/classify/async/{job_id}" in spec["paths"]
    assert json.dumps(spec["paths"]["/statistics"])


def test_run_and_object_pages_show_the_classification(site: Site) -> None:
    with site.archive.engine.connect() as conn:
        run, obj = conn.execute(text(
            "SELECT r.name, t.name FROM archive.product p JOIN archive.run r "
            "USING (run_id) JOIN archive.target t USING (target_id) "
            "WHERE p.product_id = :p"), {"p": site.ia[0]}).one()
    for path in (f"/runs/{run}", f"/objects/{obj}"):
        data = requests.get(site.url + path, params={"FORMAT": "json"},
                            timeout=30).json()
        mine = [p for p in data["products"] if p["product_id"] == site.ia[0]]
        assert len(mine) == 1 and mine[0]["classification"]["type"] == "Ia"
        assert mine[0]["classification"]["label"].startswith("Ia")
        page = requests.get(site.url + path, timeout=30).text
        assert f'<a href="/classify/stored?ID={site.ia[0]}">Ia' in page


def test_oversized_and_multiple_uploads_are_refused(site: Site) -> None:
    big = b"4000 1\n" * ((24 << 20) // 7)  # 24 MiB of text
    r = requests.post(site.url + "/classify/sync", data=big, timeout=60,
                      headers={"Content-Type": "text/plain"})
    assert r.status_code == 413 and query_status(strict_votable(r.content)) == [
        "ERROR"]
    r = requests.post(site.url + "/classify/async", files={
        "a": ("a.txt", b"4000 1\n"), "b": ("b.txt", b"4000 1\n")}, timeout=60,
        allow_redirects=False)
    assert r.status_code == 400 and r.text.startswith("UsageFault: upload one")


def test_job_lists_are_separate_per_service(site: Site) -> None:
    r = requests.post(site.url + "/classify/async", data={"ID": str(site.ia[0])},
                      allow_redirects=False, timeout=60)
    job_id = r.headers["Location"].rsplit("/", 1)[1]
    tap = requests.post(site.url + "/tap/async", data={
        "LANG": "ADQL", "QUERY": "SELECT TOP 1 * FROM pessto.runs"},
        allow_redirects=False, timeout=60)
    tap_id = tap.headers["Location"].rsplit("/", 1)[1]
    classify_list = requests.get(site.url + "/classify/async", timeout=60).text
    tap_list = requests.get(site.url + "/tap/async", timeout=60).text
    assert job_id in classify_list and tap_id not in classify_list
    assert tap_id in tap_list and job_id not in tap_list
    assert requests.get(f"{site.url}/tap/async/{job_id}",
                        timeout=60).status_code == 404
    assert requests.get(f"{site.url}/classify/async/{tap_id}",
                        timeout=60).status_code == 404
