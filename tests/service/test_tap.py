"""TAP over HTTP with real clients: STILTS taplint, pyvo, and raw requests."""

from __future__ import annotations

import io
import re
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests
from astropy.io.votable import parse
from astropy.table import Table
from lxml import etree

from tests.conftest import LiveServer, start_server, stop_server
from tests.tap_fixtures import start_worker, stop_worker, tap_worker  # noqa: F401

pytestmark = pytest.mark.usefixtures("tap_worker")


def votable(content: bytes) -> Table:
    """Parse a VOTable strictly (astropy warnings are errors)."""
    return parse(io.BytesIO(content), verify="exception").get_first_table()


def query_status(content: bytes) -> list[tuple[str, str]]:
    root = etree.fromstring(content)
    return [(i.get("value"), (i.text or "")) for i in root.iter(
        "{*}INFO") if i.get("name") == "QUERY_STATUS"]


def wait_final(job_url: str) -> bytes:
    """Return the job document once the job left the active phases."""
    deadline = time.monotonic() + 60
    while True:
        doc = requests.get(job_url, params={"WAIT": "10"}, timeout=60).content
        if not re.search(rb"<uws:phase>(PENDING|QUEUED|EXECUTING)<", doc):
            return doc
        assert time.monotonic() < deadline, doc


def sync(server: LiveServer, query: str, **params: str) -> requests.Response:
    return requests.post(server.url + "/tap/sync",
                         data={"LANG": "ADQL", "QUERY": query, **params}, timeout=60)


#: The only warning taplint (STILTS 3.4.7) may give: the bearer-token method
#: ``ivo://ivoa.net/sso#token`` (SSO 2.1 draft, used by CADC and Rubin; pyvo takes
#: any method URI) is not among the SSO 2.0 identifiers taplint knows. It is
#: declared three times, each needed by pyvo's AuthSession (longest URL prefix
#: wins): /tap, the twin /auth/tap, and the archive root that covers files.
TOKEN_WARNING = re.compile(r'W-CAP-CPSM-\d+ Unknown SecurityMethod standardID '
                           r'"ivo://ivoa\.net/sso#token"')


#: The only error: STILTS 3.4.7 predates ADQL 2.1's ``features-adql-conditional``
#: key (COALESCE), which the archive declares as the standard defines it.
CONDITIONAL_ERROR = ('E-CAP-KEYX-1 Unknown standard feature key '
                     '"ivo://ivoa.net/std/TAPRegExt#features-adql-conditional" '
                     'for language ADQL')


def test_taplint_reports_only_its_own_gaps(live_server: LiveServer) -> None:
    out = subprocess.run(
        ["stilts", "taplint", f"tapurl={live_server.url}/tap", "report=EW",
         "stages=TMV TME TMS TMC CPV CAP AVV QGE QPO QAS UWS MDQ OBS UPL EXA"],
        capture_output=True, text=True, timeout=600).stdout
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+)", out)
    assert totals, out
    errors = [line for line in out.splitlines() if line.startswith("E-")]
    assert errors == [CONDITIONAL_ERROR] and int(totals.group(1)) == 1, out
    warnings = [line for line in out.splitlines() if line.startswith("W-")]
    # no W-CAP-CPI2: one role="std" TAP interface (the anonymous one)
    assert all(TOKEN_WARNING.match(w) for w in warnings), out
    assert int(totals.group(2)) == len(warnings) <= 3, out


def test_sync_votable_with_metadata(live_server: LiveServer) -> None:
    r = sync(live_server, "SELECT TOP 5 obs_publisher_did, s_ra, s_dec, s_region, "
             "access_url, t_min FROM ivoa.ObsCore ORDER BY t_min")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/x-votable+xml")
    t = votable(r.content)
    assert len(t.array) == 5
    f = {x.name: x for x in t.fields}
    assert f["s_ra"].ucd == "pos.eq.ra" and str(f["s_ra"].unit) == "deg"
    assert f["s_region"].xtype == "adql:REGION"
    assert str(t.array["s_region"][0]).startswith("Polygon ICRS ")
    assert str(t.array["access_url"][0]).startswith(live_server.url + "/products/")
    assert query_status(r.content)[0][0] == "OK"


@pytest.mark.parametrize(("maxrec", "top", "rows", "overflow"), [
    ("3", "", 3, True), ("5", "TOP 2", 2, False), ("2", "TOP 2", 2, False),
    ("0", "", 0, True)])
def test_maxrec_and_overflow(live_server: LiveServer, maxrec: str, top: str,
                             rows: int, overflow: bool) -> None:
    r = sync(live_server, f"SELECT {top} obs_id FROM ivoa.ObsCore", MAXREC=maxrec)
    assert r.status_code == 200
    assert len(votable(r.content).array) == rows
    assert ("OVERFLOW" in [s for s, _ in query_status(r.content)]) is overflow


@pytest.mark.parametrize(("fmt", "ctype"), [
    ("csv", "text/csv"), ("tsv", "text/tab-separated-values"),
    ("votable/b2", "application/x-votable+xml;serialization=binary2"),
    ("fits", "application/fits"), ("text/xml", "text/xml")])
def test_output_formats(live_server: LiveServer, fmt: str, ctype: str) -> None:
    r = sync(live_server, "SELECT TOP 4 obs_id, s_ra, calib_level FROM "
             "ivoa.ObsCore ORDER BY obs_id", RESPONSEFORMAT=fmt)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(ctype)
    if fmt in ("csv", "tsv"):
        lines = r.text.strip().splitlines()
        assert (
            len(lines) == 5 and lines[0].replace("\t", ",") == "obs_id,s_ra,calib_level"
        )
    elif fmt == "fits":
        assert r.content.startswith(b"SIMPLE  =")
    else:
        assert len(votable(r.content).array) == 4


@pytest.mark.parametrize("query", [
    "SELECT * FROM ivoa.ObsCore; DROP TABLE archive.product",
    "DROP TABLE archive.product",
    "INSERT INTO pessto.runs (name) VALUES ('x')",
    "UPDATE archive.product SET release_date = now()",
    "SELECT * FROM pg_catalog.pg_authid",
    "SELECT * FROM archive.product",
    "SELECT pg_sleep(30) FROM ivoa.ObsCore",
    "SELECT pg_read_file('/etc/passwd') FROM ivoa.ObsCore",
    "SELECT pg_ls_dir('.') FROM ivoa.ObsCore",
    "SELECT set_config('vo_archive.proprietary', 'on', false) FROM ivoa.ObsCore",
    "SELECT obs_id FROM ivoa.ObsCore WHERE " + " OR ".join(["s_ra > 1"] * 3000),
    "DUFF QUERY",
])
def test_escape_attempts_get_a_clean_error(live_server: LiveServer, query: str
                                           ) -> None:
    count = sync(live_server, "SELECT COUNT(*) AS n FROM ivoa.ObsCore")
    before = votable(count.content).array["n"][0]
    t0 = time.monotonic()
    r = sync(live_server, query)
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("application/x-votable+xml")
    status = query_status(r.content)
    assert len(status) == 1 and status[0][0] == "ERROR" and status[0][1]
    assert b"<TABLE" not in r.content
    assert time.monotonic() - t0 < 10
    after = votable(sync(live_server, "SELECT COUNT(*) AS n FROM ivoa.ObsCore"
                         ).content).array["n"][0]
    assert after == before


def test_errors_in_text_for_csv(live_server: LiveServer) -> None:
    r = sync(live_server, "SELECT nope FROM ivoa.ObsCore", RESPONSEFORMAT="csv")
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("text/plain")
    assert r.text.startswith("UsageFault: query failed: column \"nope\"")


def test_lang_and_repeated_parameters(live_server: LiveServer) -> None:
    for lang in ("ADQL", "ADQL-2.0", "ADQL-2.1"):
        assert sync(live_server, "SELECT TOP 1 obs_id FROM ivoa.ObsCore",
                    LANG=lang, REQUEST="doQuery").status_code == 200
    assert sync(live_server, "SELECT TOP 1 obs_id FROM ivoa.ObsCore",
                LANG="OOBLECK").status_code == 400
    r = requests.get(live_server.url + "/tap/sync", params=[
        ("LANG", "ADQL"), ("QUERY", "SELECT TOP 1 obs_id FROM ivoa.ObsCore"),
        ("MAXREC", "1"), ("MAXREC", "2")], timeout=30)
    assert r.status_code == 400


def test_vosi_tables_detail_and_single_table(live_server: LiveServer) -> None:
    short = live_server.get("/tap/tables?detail=min")
    assert short.status_code == 200 and b"<column>" not in short.content
    full = live_server.get("/tap/tables/ivoa.ObsCore")
    assert full.status_code == 200 and full.content.count(b"<column>") > 30
    assert live_server.get("/tap/tables/archive.product").status_code == 404


def test_examples_are_strict_xml_and_run(live_server: LiveServer) -> None:
    r = live_server.get("/tap/examples")
    root = etree.fromstring(r.content)
    queries = [e.text for e in root.iter("{*}pre") if e.get("property") == "query"]
    assert len(queries) >= 5
    for q in queries:
        res = sync(live_server, q, MAXREC="10")
        assert res.status_code == 200, (q, res.text)


# --- pyvo ----------------------------------------------------------------------

@pytest.fixture
def service(live_server: LiveServer):  # pyvo type
    import pyvo

    return pyvo.dal.TAPService(live_server.url + "/tap")


def test_pyvo_run_sync_and_tables(service) -> None:
    result = service.run_sync("SELECT TOP 7 obs_id, target_name FROM ivoa.ObsCore")
    assert len(result) == 7
    tables = service.tables
    assert "ivoa.ObsCore" in [t.name for t in tables]
    assert "s_ra" in [c.name for c in tables["ivoa.ObsCore"].columns]


def test_pyvo_run_async(service) -> None:
    result = service.run_async("SELECT TOP 3 obs_id FROM ivoa.ObsCore ORDER BY obs_id")
    assert len(result) == 3


def test_pyvo_submit_wait_fetch_delete(service) -> None:
    job = service.submit_job("SELECT TOP 4 obs_id FROM ivoa.ObsCore", maxrec=2)
    job.run()
    job.wait(timeout=60)
    assert job.phase == "COMPLETED"
    result = job.fetch_result()
    assert len(result) == 2
    url = job.url
    job.delete()
    assert requests.get(url, timeout=30).status_code == 404


def test_pyvo_upload(service) -> None:
    first = service.run_sync("SELECT TOP 3 obs_publisher_did FROM ivoa.ObsCore "
                             "ORDER BY obs_publisher_did").to_table()
    mine = Table({"did": [str(x) for x in first["obs_publisher_did"]],
                  "weight": [1.5, 2.5, 3.5]})
    result = service.run_sync(
        "SELECT u.did, u.weight, o.target_name FROM TAP_UPLOAD.mine AS u "
        "JOIN ivoa.ObsCore AS o ON o.obs_publisher_did = u.did",
        uploads={"mine": mine}).to_table()
    assert sorted(result["weight"]) == [1.5, 2.5, 3.5]


def test_async_error_summary(service) -> None:
    import pyvo

    job = service.submit_job("SELECT nothing FROM nowhere.at_all")
    job.run()
    job.wait(timeout=60, phases={"COMPLETED", "ERROR", "ABORTED"})
    assert job.phase == "ERROR"
    with pytest.raises(pyvo.dal.DALQueryError, match="not published"):
        job.raise_if_error()


# --- UWS details -----------------------------------------------------------------

def test_uws_job_lifecycle(live_server: LiveServer) -> None:
    base = live_server.url + "/tap/async"
    r = requests.post(base, data={"LANG": "ADQL", "QUERY":
                                  "SELECT TOP 1 obs_id FROM ivoa.ObsCore",
                                  "RUNID": "lifecycle"},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 303
    job = r.headers["Location"]
    assert requests.get(job + "/phase", timeout=30).text.strip() == "PENDING"
    r = requests.post(job + "/executionduration", data={"EXECUTIONDURATION": "30"},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 303
    assert requests.get(job + "/executionduration", timeout=30).text.strip() == "30"
    doc = requests.get(job, timeout=30).content
    assert b'<uws:parameter id="runid">lifecycle</uws:parameter>' in doc
    listed = requests.get(base, params={"PHASE": "PENDING", "LAST": "100"},
                          timeout=30).content
    assert job.rsplit("/", 1)[1].encode() in listed
    r = requests.post(job + "/phase", data={"PHASE": "RUN"}, allow_redirects=False,
                      timeout=30)
    assert r.status_code == 303
    doc = wait_final(job)
    assert b"<uws:phase>COMPLETED</uws:phase>" in doc
    assert b'id="result"' in doc
    res = requests.get(job + "/results/result", timeout=30)
    assert len(votable(res.content).array) == 1
    r = requests.delete(job, allow_redirects=False, timeout=30)
    assert r.status_code == 303
    assert requests.get(job, timeout=30).status_code == 404


def test_uws_abort(live_server: LiveServer) -> None:
    base = live_server.url + "/tap/async"
    r = requests.post(base, data={"LANG": "ADQL", "PHASE": "RUN", "QUERY":
                                  "SELECT COUNT(*) FROM ivoa.ObsCore AS a, "
                                  "ivoa.ObsCore AS b, ivoa.ObsCore AS c, "
                                  "ivoa.ObsCore AS d"}, timeout=30)
    job = r.url
    requests.get(job, params={"WAIT": "5", "PHASE": "QUEUED"}, timeout=30)
    r = requests.post(job + "/phase", data={"PHASE": "ABORT"}, timeout=30)
    assert b"<uws:phase>ABORTED</uws:phase>" in r.content
    assert requests.get(job + "/phase", timeout=30).text.strip() == "ABORTED"
    # the query itself stops too (cancelled by the web server or the watchdog)
    from sqlalchemy import text

    deadline = time.monotonic() + 10
    while True:
        with live_server.archive.engine.connect() as conn:
            running = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                "query LIKE '%ivoa.ObsCore AS d%' AND pid <> pg_backend_pid()")
            ).scalar_one()
        if running == 0:
            break
        assert time.monotonic() < deadline, "aborted query still running"
        time.sleep(0.2)


def test_async_job_survives_a_server_restart(live_server: LiveServer) -> None:
    archive = live_server.archive
    server = start_server(archive)
    try:
        r = requests.post(server.url + "/tap/async", data={
            "LANG": "ADQL", "QUERY": "SELECT TOP 2 obs_id FROM ivoa.ObsCore"},
            allow_redirects=False, timeout=30)
        job_path = r.headers["Location"].split(server.url, 1)[1]
        r = requests.post(server.url + "/tap/async", data={
            "LANG": "ADQL", "PHASE": "RUN",
            "QUERY": "SELECT TOP 3 obs_id FROM ivoa.ObsCore"},
            allow_redirects=False, timeout=30)
        queued_path = r.headers["Location"].split(server.url, 1)[1]
    finally:
        stop_server(server.process)
    server = start_server(archive)
    try:
        r = requests.post(server.url + job_path + "/phase", data={"PHASE": "RUN"},
                          timeout=30)
        assert r.status_code == 200
        doc = wait_final(server.url + job_path)
        assert b"COMPLETED" in doc, doc
        res = requests.get(server.url + job_path + "/results/result", timeout=30)
        assert len(votable(res.content).array) == 2
        doc = wait_final(server.url + queued_path)
        assert b"COMPLETED" in doc, doc
        res = requests.get(server.url + queued_path + "/results/result", timeout=30)
        assert len(votable(res.content).array) == 3
    finally:
        stop_server(server.process)


@pytest.mark.parametrize("query", [
    "SELECT TOP 2 COORD1(POINT(s_ra, s_dec)) AS c1, COORD2(POINT(s_ra, s_dec)) AS c2 "
    "FROM ivoa.ObsCore",
    "SELECT TOP 2 DISTANCE(POINT(s_ra, s_dec), POINT(10, 10)) AS d1, "
    "DISTANCE(s_ra, s_dec, 10, 10) AS d2 FROM ivoa.ObsCore",
    "SELECT TOP 2 AREA(s_region) AS a FROM ivoa.ObsCore WHERE s_region IS NOT NULL",
    "SELECT TOP 2 obs_id FROM ivoa.ObsCore WHERE 1 = CONTAINS(POINT(s_ra, s_dec), "
    "BOX(180, 0, 360, 180))",
    "SELECT TOP 2 obs_id FROM ivoa.ObsCore WHERE 1 = CONTAINS(POINT(s_ra, s_dec), "
    "POLYGON(300, -20, 320, -20, 320, 0, 300, 0))",
    "SELECT TOP 2 obs_id FROM ivoa.ObsCore WHERE 1 = INTERSECTS(s_region, "
    "CIRCLE(308, -11, 90))",
    "SELECT TOP 2 obs_id FROM ivoa.ObsCore WHERE DISTANCE(POINT(s_ra, s_dec), "
    "POINT(308, -11)) < 90",
    "SELECT TOP 2 POINT(s_ra, s_dec) AS p, CIRCLE(s_ra, s_dec, 1) AS c FROM "
    "ivoa.ObsCore",
    "SELECT TOP 2 obs_id FROM ivoa.ObsCore WHERE obs_id ILIKE '%%' ORDER BY obs_id "
    "OFFSET 1",
    "SELECT name FROM pessto.runs UNION SELECT name FROM pessto.targets",
    "SELECT TOP 1 name FROM pessto.runs UNION SELECT name FROM pessto.targets",
    "SELECT TOP 2 LOWER(obs_id) AS l, UPPER(target_name) AS u, "
    "COALESCE(s_resolution, -1.0) AS r FROM ivoa.ObsCore WHERE "
    "LOWER(instrument_name) = 'efosc'",
])
def test_declared_features_work(live_server: LiveServer, query: str) -> None:
    r = sync(live_server, query, MAXREC="2")
    assert r.status_code == 200, r.text
    assert len(votable(r.content).array) == 2


def test_coalesce_is_declared_as_adql_conditional(live_server: LiveServer) -> None:
    # ADQL 2.1 declares COALESCE under features-adql-conditional (TAPRegExt)
    root = etree.fromstring(live_server.get("/tap/capabilities").content)
    declared = {(lf.get("type"), form.text) for lf in root.iter("languageFeatures")
                for form in lf.iter("form")}
    assert ("ivo://ivoa.net/std/TAPRegExt#features-adql-conditional",
            "COALESCE") in declared
    r = sync(live_server, "SELECT TOP 1 COALESCE(NULL, s_ra, 1.0) AS c, s_ra "
             "FROM ivoa.ObsCore WHERE s_ra IS NOT NULL")
    t = votable(r.content)
    assert t.array["c"][0] == t.array["s_ra"][0]


def test_geometry_results_are_dali_arrays(live_server: LiveServer) -> None:
    r = sync(live_server, "SELECT TOP 1 POINT(s_ra, s_dec) AS p, s_ra, s_dec "
             "FROM ivoa.ObsCore")
    t = votable(r.content)
    f = {x.name: x for x in t.fields}
    assert f["p"].xtype == "point" and f["p"].arraysize == "2"
    ra, dec = t.array["p"][0]
    assert abs(ra - t.array["s_ra"][0]) < 1e-9 and abs(dec - t.array["s_dec"][0]) < 1e-9


@pytest.fixture(scope="module")
def loopback_fetching_server(live_server: LiveServer,
                             tmp_path_factory: pytest.TempPathFactory
                             ) -> Iterator[LiveServer]:
    """The demo archive served with uploads by URL allowed from 127.0.0.1."""
    cfg = tmp_path_factory.mktemp("fetch") / "archive.toml"
    cfg.write_text('[limits]\nfetch_allow = ["127.0.0.1/32"]\n')
    server = start_server(live_server.archive, {"VO_ARCHIVE_CONFIG": str(cfg)})
    yield server
    stop_server(server.process)


def test_upload_by_url(loopback_fetching_server: LiveServer, tmp_path) -> None:
    import http.server
    import threading

    live_server = loopback_fetching_server

    (tmp_path / "t.xml").write_text(
        '<?xml version="1.0"?><VOTABLE version="1.3" xmlns="http://www.ivoa.net/xml/'
        'VOTable/v1.3"><RESOURCE><TABLE><FIELD name="ra" datatype="double"/>'
        '<FIELD name="dec" datatype="double"/><FIELD name="when" datatype="char" '
        'arraysize="*" xtype="timestamp"/><DATA><TABLEDATA>'
        "<TR><TD>308.2</TD><TD>-11.68</TD><TD>2012-11-10T01:02:03</TD></TR>"
        "</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, directory=str(tmp_path), **kw)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/t.xml"
        r = sync(live_server, "SELECT * FROM TAP_UPLOAD.pos", UPLOAD=f"pos,{url}")
        t = votable(r.content)
        assert [f.name for f in t.fields] == ["ra", "dec", "when"]
        assert t.fields[2].xtype == "timestamp"
        assert t.array["when"][0] == "2012-11-10T01:02:03"
        r = sync(live_server, "SELECT COUNT(*) AS n FROM TAP_UPLOAD.pos AS u JOIN "
                 "ivoa.ObsCore AS o ON 1 = CONTAINS(POINT(o.s_ra, o.s_dec), "
                 "CIRCLE(u.ra, u.dec, 0.1))", UPLOAD=f"pos,{url}")
        assert votable(r.content).array["n"][0] > 0
        r = sync(live_server, "SELECT * FROM TAP_UPLOAD.pos",
                 UPLOAD=f"pos,{url.replace('t.xml', 'missing.xml')}")
        assert r.status_code == 400 and query_status(r.content)[0][0] == "ERROR"
    finally:
        httpd.shutdown()
