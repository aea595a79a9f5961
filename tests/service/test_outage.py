"""A database outage while the server runs: every route answers as its protocol says.

The test has a PostgreSQL cluster of its own (the session's cluster serves the
other tests): it serves a small archive with gunicorn, asks every operation of
``/openapi.json`` once with the database up, stops the cluster and asks again
(each answer is 503 with ``Retry-After`` in the route's fault style, or, for a
route that does not read the database, its usual answer; never a 500), then
starts the cluster and asks again: the usual answers, with no server restart
(the pooled connections and their prepared statements died with the server).
"""

from __future__ import annotations

import io
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from sqlalchemy import text

from tests.auth_fixtures import Accounts, make_accounts
from tests.conftest import (
    Archive,
    LiveServer,
    create_database,
    start_server,
    stop_server,
)
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.cluster import EmbeddedCluster
from vo_archive.db.engine import get_engine

#: Routes that cannot answer without the database.
NEED_DATABASE = ("/scs", "/siap", "/sia2/query", "/ssap", "/tap/sync", "/tap/async",
                 "/datalink/links", "/runs", "/products/{product_id}", "/",
                 "/objects")

CONE = (("RA", "20"), ("DEC", "-30"), ("SR", "2"))
ADQL = (("REQUEST", "doQuery"), ("LANG", "ADQL"),
        ("QUERY", "SELECT TOP 5 obs_publisher_did FROM ivoa.obscore"))
#: Past this MAXREC the DAL services stream from a server-side cursor
#: (vo_archive.vo.dal.BUFFERED_MAXREC) instead of running a prepared statement.
STREAMED = (("MAXREC", "6000"),)
#: The parameters of a plausible request, by (method or "" for any, path).
QUERIES: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("get", "/scs"): CONE,
    ("post", "/scs"): (*CONE, *STREAMED),
    ("", "/siap"): (("POS", "20,-30"), ("SIZE", "4")),
    ("get", "/sia2/query"): (("POS", "CIRCLE 20 -30 2"),),
    ("post", "/sia2/query"): (("POS", "CIRCLE 20 -30 2"), *STREAMED),
    ("", "/ssap"): (("REQUEST", "queryData"), ("POS", "20,-30"), ("SIZE", "4")),
    ("", "/tap/sync"): ADQL,
    ("post", "/tap/async"): ADQL,
    ("", "/objects"): (("Q", "SN"),),
}


@dataclass
class Outage:
    """A served archive in a cluster this module may stop and start."""

    cluster: EmbeddedCluster
    server: LiveServer
    accounts: Accounts
    values: dict[str, str]
    #: Jobs each pass may delete (one per pass).
    spare_jobs: list[str]


@pytest.fixture(scope="module")
def outage(demo_files: list[Path]) -> Iterator[Outage]:
    root = Path(tempfile.mkdtemp(prefix="vo-archive-test-outage-"))
    root.chmod(0o755)
    cluster = EmbeddedCluster(root / "pgdata")
    cluster.init()
    server = None
    try:
        name = "o_" + uuid.uuid4().hex[:8]
        home = root / "home"
        home.mkdir()
        settings = Settings(home=home, dsn=create_database(cluster, name))
        engine = get_engine(settings)
        migrate.upgrade(engine, settings.publisher_authority)
        archive = Archive(settings, engine)
        archive.ingest(demo_files[:40])
        accounts = make_accounts(archive)
        with engine.connect() as conn:
            pid, run, target = conn.execute(text(
                "SELECT p.product_id, r.name, (SELECT name FROM archive.target "
                "LIMIT 1) FROM archive.product p JOIN archive.run r USING (run_id) "
                "ORDER BY p.product_id LIMIT 1")).one()
        engine.dispose()
        server = start_server(archive)
        jobs = []
        # two outages, three passes each, two callers, two job services (TAP
        # and classification) that delete jobs
        for _ in range(28):
            r = requests.post(server.url + "/tap/async", data={
                "REQUEST": "doQuery", "LANG": "ADQL",
                "QUERY": "SELECT TOP 1 obs_id FROM ivoa.obscore"},
                headers=accounts.member.bearer, allow_redirects=False, timeout=60)
            assert r.status_code == 303, r.text
            jobs.append(r.headers["Location"].rsplit("/", 1)[1])
        import bokeh

        values = {"product_id": str(pid), "version_no": "1", "run_name": run,
                  "version": bokeh.__version__,
                  "name": target or "x", "job_id": jobs.pop(), "suffix": "json",
                  "filename": "not-fits.fits",
                  "did": f"{settings.publisher_authority.rstrip('/')}/pessto?{pid}/v1"}
        yield Outage(cluster, server, accounts, values, jobs)
    finally:
        if server is not None:
            stop_server(server.process)
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def _operations(server: LiveServer) -> list[tuple[str, str, dict[str, Any]]]:
    spec = server.get("/openapi.json").json()
    return sorted((path, method, op) for path, ops in spec["paths"].items()
                  for method, op in ops.items())


def _ask(outage: Outage, path: str, method: str, op: dict[str, Any],
         headers: dict[str, str]) -> requests.Response:
    """Send a plausible request: each parameter's first example, real names."""
    url = path
    for p in op["parameters"]:
        if p["in"] == "path":
            value = outage.values[p["name"]]
            if p["name"] == "job_id" and method == "delete":
                value = outage.spare_jobs.pop()
            elif p["name"] == "name" and path.startswith("/tap/tables"):
                value = "ivoa.obscore"
            elif p["name"] == "name" and path.startswith("/static/bokeh"):
                value = "bokeh.min.js"
            url = url.replace("{" + p["name"] + "}", quote(value, safe=""))
    query = list(QUERIES.get((method, path), QUERIES.get(("", path), ())))
    if path == "/datalink/links":
        query = [("ID", outage.values["did"])]
    kw: dict[str, Any] = {"headers": headers, "allow_redirects": False}
    if path == "/upload":
        kw["files"] = {"file": ("not-fits.fits", io.BytesIO(b"not FITS at all"))}
    elif method == "put":
        kw["data"] = b"not FITS at all"
    elif method == "post":
        kw["data"] = query
    else:
        kw["params"] = query
    return requests.request(method.upper(), outage.server.url + url, timeout=60,
                            **kw)


def _check_transient(r: requests.Response, style: str, where: str) -> None:
    """Assert a 503 in the route's fault style, with a Retry-After."""
    assert r.status_code == 503, f"{where}: {r.status_code} {r.content[:300]!r}"
    assert r.headers.get("Retry-After", "").isdigit(), f"{where}: {r.headers}"
    ctype = r.headers.get("Content-Type", "")
    if style == "text" or not ctype.startswith("application/x-votable+xml"):
        assert ctype.startswith("text/plain"), f"{where}: {ctype}"
        # SODA 1.0 §5.2 names the fault ServiceUnavailable; the others, DALI's
        name = "ServiceUnavailable" if "/soda" in where else "TransientFault"
        assert r.text.startswith(name + ": "), f"{where}: {r.text[:200]!r}"
        return
    from astropy.io.votable import parse
    from astropy.io.votable.exceptions import VOWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", VOWarning)
        vot = parse(io.BytesIO(r.content), verify="exception")
    status = [i for res in vot.resources for i in res.infos
              if i.name == "QUERY_STATUS"]
    assert status and status[0].value == "ERROR", f"{where}: {r.content[:300]!r}"
    assert (status[0].content or "").startswith("TransientFault: "), where
    if style == "scs":  # SCS 1.03 §2: the Error INFO as well
        assert any(i.name == "Error" for i in vot.infos), where


Answers = dict[tuple[str, str, str], tuple[int, str]]


def _ask_all(outage: Outage, who: dict[str, dict[str, str]],
             check: Callable[[tuple[str, str, str], requests.Response, str], None]
             ) -> Answers:
    answers: Answers = {}
    for path, method, op in _operations(outage.server):
        for label, headers in who.items():
            key = (label, method.upper(), path)
            r = _ask(outage, path, method, op, headers)
            check(key, r, op["x-fault-style"])
            answers[key] = (r.status_code, r.headers.get("Content-Type", ""))
    return answers


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_every_route_answers_a_database_outage_with_503(outage: Outage,
                                                        mode: str) -> None:
    who = {"anonymous": {}, "reducer": outage.accounts.reducer.bearer}

    def usual(key: tuple[str, str, str], r: requests.Response, style: str) -> None:
        assert r.status_code < 500, f"{key}: {r.status_code} {r.content[:300]!r}"

    before = _ask_all(outage, who, usual)
    outage.cluster.stop(mode)
    try:
        def down(key: tuple[str, str, str], r: requests.Response, style: str
                 ) -> None:
            where = " ".join(key)
            assert r.status_code != 500, f"{where}: {r.content[:300]!r}"
            if key[2] in NEED_DATABASE or r.status_code != before[key][0]:
                _check_transient(r, style, where)

        during = _ask_all(outage, who, down)
    finally:
        outage.cluster.start()
    # every route that reads the database said so, whoever asked
    transient = {k for k, (status, _) in during.items() if status == 503}
    assert {("anonymous", m, p) for _, m, p in before if p in NEED_DATABASE} \
        <= transient
    # credentials are checked in the database, on every route but VOSI's own
    assert {p for who_, _, p in before.keys() - transient if who_ == "reducer"
            and not p.endswith(("/availability", "/capabilities"))
            } == set()
    # back at once, without a restart of the server
    after = _ask_all(outage, who, usual)
    assert after == before
