"""Several web nodes behind nginx (#18): no state of their own, failover, links.

Two ``vo-archive serve`` processes on one database stand for two web nodes; the
repository's nginx configuration (``deploy/nginx/pessto-archive.conf``) runs in
front of them. A member's session, a sign-in form, the limit on password
guesses and an asynchronous TAP job work across the nodes; links in answers
name the proxy; a large bundle streams through nginx byte for byte; and with one
node stopped, a stream of mixed requests through nginx sees no failure.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from astropy.io.votable import parse_single_table
from sqlalchemy import text

from tests.conftest import Archive, LiveServer, start_server, stop_server
from tests.nginx import Nginx, start_nginx
from vo_archive.retrieval.bigdemo import generate_large
from vo_archive.retrieval.bundle import parse_manifest
from vo_archive.web.auth import MAX_FAILURES, add_account, remove_account, set_account

pytestmark = pytest.mark.slow

BIG_RUN = "bignodes"
TRUSTING = {"VO_ARCHIVE_TRUSTED_PROXIES": "1"}


@dataclass
class Nodes:
    """Two web nodes of one archive and nginx in front of them."""

    archive: Archive
    a: LiveServer
    b: LiveServer
    proxy: Nginx


def _hostport(url: str) -> str:
    return urlsplit(url).netloc


@pytest.fixture(scope="module")
def nodes(make_archive: Callable[..., Archive], demo_files: list[Path],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    """The demo products and a run of two 16 MB images, two nodes, nginx."""
    archive = make_archive()
    archive.ingest([demo_files[0].parent])
    big = tmp_path_factory.mktemp("bignodes")
    generate_large(big, 32 << 20)
    archive.ingest([big], run_name=BIG_RUN)
    # node A runs a job worker beside it; node B none (jobs may run anywhere)
    a = start_server(archive, TRUSTING)
    try:
        b = start_server(archive, TRUSTING, ("--job-workers", "0"))
    except BaseException:
        stop_server(a.process)
        raise
    try:
        proxy = start_nginx([_hostport(a.url), _hostport(b.url)])
    except BaseException:
        stop_server(a.process)
        stop_server(b.process)
        raise
    yield Nodes(archive, a, b, proxy)
    proxy.stop()
    stop_server(a.process)
    stop_server(b.process)


def _position(archive: Archive) -> tuple[float, float]:
    with archive.engine.connect() as conn:
        ra, dec = conn.execute(text(
            "SELECT ra, dec FROM pessto.products WHERE ra IS NOT NULL "
            "AND level = 'final' ORDER BY product_id LIMIT 1")).one()
    return float(ra), float(dec)


def _basic(name: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{name}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


# -- links --------------------------------------------------------------------------

def test_links_in_answers_name_the_proxy(nodes: Nodes) -> None:
    proxy = nodes.proxy.url
    node_urls = (nodes.a.url, nodes.b.url)
    for service in ("tap", "scs", "sia2", "ssap"):
        caps = requests.get(f"{proxy}/{service}/capabilities", timeout=60)
        assert caps.status_code == 200, (service, caps.text[:300])
        urls = re.findall(r"<accessURL[^>]*>([^<]+)</accessURL>", caps.text)
        assert urls and all(u.startswith(proxy + "/") for u in urls), (service, urls)
    ra, dec = _position(nodes.archive)
    scs = requests.get(f"{proxy}/scs", params={"RA": ra, "DEC": dec, "SR": 0.01},
                       timeout=60)
    assert scs.status_code == 200 and proxy + "/" in scs.text
    assert not any(u in scs.text for u in node_urls)
    # the DataLink service descriptor of the answer, asked for one of its rows
    assert f'value="{proxy}/datalink/links"' in scs.text
    did = re.search(r"<TD>(ivo://[^<]+)</TD>", scs.text)
    assert did, scs.text[:2000]
    dl = requests.get(f"{proxy}/datalink/links", params={"ID": did.group(1)},
                      timeout=60)
    assert dl.status_code == 200 and f"{proxy}/products/" in dl.text
    assert not any(u in dl.text for u in node_urls)
    # a UWS job's URL, and the answers about it
    made = requests.post(f"{proxy}/tap/async", data={
        "LANG": "ADQL", "QUERY": "SELECT TOP 1 name FROM pessto.runs"},
        allow_redirects=False, timeout=60)
    assert made.status_code == 303
    assert made.headers["Location"].startswith(proxy + "/tap/async/")
    job = requests.get(made.headers["Location"], timeout=60)
    assert job.status_code == 200 and not any(u in job.text for u in node_urls)
    assert requests.delete(made.headers["Location"], allow_redirects=False,
                           timeout=60).status_code == 303


def test_forwarded_headers_are_believed_only_from_trusted_proxies(
        nodes: Nodes, live_server: LiveServer) -> None:
    """``trusted_proxies = 1``: the proxy's X-Forwarded-* make the links (https)."""
    forwarded = {"X-Forwarded-Proto": "https",
                 "X-Forwarded-Host": "archive.example.org",
                 "X-Forwarded-Port": "443", "X-Forwarded-For": "192.0.2.10"}
    caps = requests.get(f"{nodes.a.url}/tap/capabilities", headers=forwarded,
                        timeout=60)
    urls = re.findall(r"<accessURL[^>]*>([^<]+)</accessURL>", caps.text)
    assert urls and all(u.startswith("https://archive.example.org/") for u in urls)
    # a node that trusts no proxy ignores them (anybody could send them)
    plain = requests.get(f"{live_server.url}/tap/capabilities", headers=forwarded,
                         timeout=60)
    urls = re.findall(r"<accessURL[^>]*>([^<]+)</accessURL>", plain.text)
    assert urls and all(u.startswith(live_server.url + "/") for u in urls), urls


# -- sessions, sign-in, password guesses ----------------------------------------------

def _form_token(s: requests.Session, url: str) -> str:
    page = s.get(url + "/login", headers={"Accept": "text/html"}, timeout=60)
    assert page.status_code == 200
    m = re.search(r'id="login-form">\s*<input type="hidden" name="csrf_token" '
                  r'value="([^"]+)"', page.text)
    assert m, page.text[:500]
    return m.group(1)


@pytest.fixture(scope="module")
def member(nodes: Nodes) -> Iterator[tuple[str, str]]:
    """A member account (name, password) in the nodes' archive."""
    name, password = "nodes-member", "nodes member password"
    add_account(nodes.archive.engine, name, ["member"], password)
    yield name, password
    remove_account(nodes.archive.engine, name)


def test_a_session_works_on_every_node(nodes: Nodes, member: tuple[str, str]) -> None:
    name, password = member
    a, b, proxy = nodes.a.url, nodes.b.url, nodes.proxy.url
    s = requests.Session()
    # the form (and its CSRF cookie) from node A, posted to node B
    token = _form_token(s, a)
    r = s.post(b + "/login", data={"csrf_token": token, "username": name,
                                   "password": password, "next": "/runs"},
               headers={"Accept": "text/html", "Origin": b}, allow_redirects=False,
               timeout=60)
    assert r.status_code == 303, r.text[:300]
    assert "vo_archive_session" in s.cookies
    for url in (a, b, proxy):
        seen = s.get(url + "/runs", timeout=60)
        assert seen.status_code == 200
        assert seen.headers.get("X-VO-Authenticated") == name, url
    # signed out on B with the CSRF token of A's page: gone on A too
    page = s.get(a + "/login", headers={"Accept": "text/html"}, timeout=60)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf and name in page.text
    value = s.cookies["vo_archive_session"]
    out = s.post(b + "/logout", data={"csrf_token": csrf.group(1)},
                 headers={"Accept": "text/html", "Origin": b}, allow_redirects=False,
                 timeout=60)
    assert out.status_code == 303
    for url in (a, proxy):
        stale = requests.get(url + "/runs", cookies={"vo_archive_session": value},
                             timeout=60)
        assert stale.status_code == 200 and "X-VO-Authenticated" not in stale.headers


def test_the_limit_on_password_guesses_holds_across_nodes(
        nodes: Nodes, member: tuple[str, str]) -> None:
    """Guesses spread over both nodes (and their workers) meet one limit."""
    name, password = member
    guesser = {"X-Forwarded-For": "198.51.100.23"}  # the client, as the proxy saw it
    for i in range(MAX_FAILURES):
        node = (nodes.a, nodes.b)[i % 2]
        r = requests.get(node.url + "/login", timeout=60,
                         headers={**guesser, **_basic(name, f"guess {i}")})
        assert r.status_code == 401, (i, r.status_code, r.text[:200])
    for node in (nodes.a, nodes.b):
        r = requests.get(node.url + "/login", timeout=60,
                         headers={**guesser, **_basic(name, password)})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    # another client behind the same proxy is not locked out
    other = {"X-Forwarded-For": "198.51.100.24", **_basic(name, password)}
    assert requests.get(nodes.b.url + "/login", headers=other,
                        timeout=60).status_code == 200


def test_a_changed_password_stops_working_on_every_node(nodes: Nodes) -> None:
    engine = nodes.archive.engine
    add_account(engine, "nodes-changer", ["member"], "old secret words")
    try:
        for node in (nodes.a, nodes.b, nodes.a, nodes.b):  # checked, then cached
            r = node.get("/runs", headers=_basic("nodes-changer", "old secret words"))
            assert r.status_code == 200
            assert r.headers["X-VO-Authenticated"] == "nodes-changer"
        set_account(engine, "nodes-changer", password="new secret words")  # noqa: S106
        for node in (nodes.a, nodes.b):
            old = node.get("/runs", headers=_basic("nodes-changer", "old secret words"))
            assert old.status_code == 401
            new = node.get("/runs", headers=_basic("nodes-changer", "new secret words"))
            assert new.status_code == 200
    finally:
        remove_account(engine, "nodes-changer")


# -- jobs ---------------------------------------------------------------------------

def test_an_async_job_made_on_one_node_is_served_by_the_other(nodes: Nodes) -> None:
    made = requests.post(f"{nodes.a.url}/tap/async", data={
        "LANG": "ADQL", "PHASE": "RUN",
        "QUERY": "SELECT TOP 5 name FROM pessto.runs ORDER BY name"},
        allow_redirects=False, timeout=60)
    assert made.status_code == 303
    job_id = made.headers["Location"].rsplit("/", 1)[1]
    job_b = f"{nodes.b.url}/tap/async/{job_id}"
    deadline = time.monotonic() + 60
    phase = ""
    while time.monotonic() < deadline:
        # UWS 1.1 blocking poll, answered by B when A's job worker is done
        phase = requests.get(job_b + "/phase", timeout=60).text.strip()
        if phase in ("COMPLETED", "ERROR", "ABORTED"):
            break
        requests.get(job_b, params={"WAIT": 5, "PHASE": phase}, timeout=60)
    assert phase == "COMPLETED"
    doc = requests.get(job_b, timeout=60).text
    assert f"{nodes.b.url}/tap/async/{job_id}/results/result" in doc
    result = requests.get(job_b + "/results/result", timeout=60)
    assert result.status_code == 200
    table = parse_single_table(io.BytesIO(result.content), verify="exception")
    assert len(table.array) == 5
    with nodes.archive.engine.connect() as conn:
        want = conn.execute(text("SELECT name FROM pessto.runs ORDER BY name "
                                 "LIMIT 5")).scalars().all()
    assert [str(n) for n in table.array["name"]] == want


# -- streaming ----------------------------------------------------------------------

def test_a_large_bundle_streams_through_the_proxy_exactly(nodes: Nodes) -> None:
    with requests.get(f"{nodes.proxy.url}/runs/{BIG_RUN}/download", stream=True,
                      timeout=120) as r:
        assert r.status_code == 200, r.text[:300]
        length = int(r.headers["Content-Length"])
        data = b"".join(r.iter_content(1 << 20))
    assert len(data) == length > 32 << 20
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        content = {m.name: tf.extractfile(m).read()  # type: ignore[union-attr]
                   for m in tf.getmembers() if m.isfile()}
    mname = next(n for n in content if n.endswith("MANIFEST.sha256"))
    root = mname[: -len("MANIFEST.sha256")]
    manifest = parse_manifest(content[mname].decode())
    assert len(manifest) >= 2
    for name, sha in manifest.items():
        assert hashlib.sha256(content[root + name]).hexdigest() == sha, name


# -- failover (last: it stops node B) -----------------------------------------------

def _mixed_requests(nodes: Nodes) -> list[Callable[[], tuple[str, bool]]]:
    proxy = nodes.proxy.url
    ra, dec = _position(nodes.archive)
    with nodes.archive.engine.connect() as conn:
        pid = conn.execute(text(
            "SELECT product_id FROM archive.product WHERE release_date <= now() "
            "ORDER BY product_id LIMIT 1")).scalar_one()

    def cone() -> tuple[str, bool]:
        r = requests.get(f"{proxy}/scs", params={"RA": ra, "DEC": dec, "SR": 0.1},
                         timeout=60)
        return f"scs {r.status_code}", r.status_code == 200 and "<TABLEDATA" in r.text

    def tap_sync() -> tuple[str, bool]:
        r = requests.post(f"{proxy}/tap/sync", timeout=60, data={
            "LANG": "ADQL", "QUERY": "SELECT count(*) AS n FROM pessto.products"})
        return f"tap {r.status_code}", r.status_code == 200 and "<TABLEDATA" in r.text

    def download() -> tuple[str, bool]:
        r = requests.get(f"{proxy}/products/{pid}", timeout=60)
        ok = (r.status_code == 200
              and len(r.content) == int(r.headers.get("Content-Length", -1)))
        return f"download {r.status_code}", ok

    def page() -> tuple[str, bool]:
        r = requests.get(proxy + "/", timeout=60)
        return f"page {r.status_code}", r.status_code == 200 and "PESSTO" in r.text

    return [cone, tap_sync, download, page]


def test_with_one_node_stopped_every_request_succeeds(nodes: Nodes) -> None:
    kinds = _mixed_requests(nodes)
    results: list[tuple[float, str, bool]] = []
    lock = threading.Lock()
    done = threading.Event()

    def client(k: int) -> None:
        i = k
        while not done.is_set():
            try:
                what, ok = kinds[i % len(kinds)]()
            except requests.RequestException as exc:
                what, ok = f"{kinds[i % len(kinds)].__name__}: {exc}", False
            with lock:
                results.append((time.monotonic(), what, ok))
            i += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)
        stopping, stopping_wall = time.monotonic(), time.time()
        stop_server(nodes.b.process)  # SIGTERM: B closes its socket, ends its requests
        stopped, stopped_wall = time.monotonic(), time.time()
        time.sleep(3.0)
    finally:
        done.set()
        for t in threads:
            t.join()
    failed = [(round(t - stopping, 2), w) for t, w, ok in results if not ok]
    assert not failed, (failed[:10], nodes.proxy.log())
    before = [r for r in results if r[0] < stopping]
    after = [r for r in results if r[0] > stopped]
    assert len(before) >= 4 and len(after) >= 4, (len(before), len(after))
    # both nodes served before the stop; once B is gone, every answer is A's
    a_addr, b_addr = _hostport(nodes.a.url), _hostport(nodes.b.url)
    served = [r for r in nodes.proxy.served() if r[2] != "/nginx-start-probe"]
    assert {r[3][-1] for r in served if r[0] < stopping_wall} == {a_addr, b_addr}
    late = [r for r in served if r[0] > stopped_wall + 0.1]
    assert late and all(r[3][-1] == a_addr for r in late), late[:5]
