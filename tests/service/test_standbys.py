"""Reads on hot standbys: a primary and two streaming standbys on loopback.

Which node ran a statement is read from each node's own pg_stat_statements,
never from the archive's log.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from astropy.io.votable import parse_single_table

from tests.auth_fixtures import Accounts, make_accounts
from tests.cluster import ReplicatedCluster, start_replicated
from tests.conftest import Archive, LiveServer, start_server, stop_server
from vo_archive.commands import dbcmd
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.cluster import EmbeddedCluster
from vo_archive.db.engine import get_engine
from vo_archive.demo import generate

PRODUCTS = 60


@dataclass
class Site:
    """The replicated archive, served with reads on its standbys."""

    rc: ReplicatedCluster
    archive: Archive
    held_back: Path
    server: LiveServer
    accounts: Accounts
    ra: float
    dec: float


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="vo-archive-test-standby-"))
    root.chmod(0o755)
    rc = start_replicated(root, standbys=2)
    server: LiveServer | None = None
    try:
        settings = rc.settings()
        engine = get_engine(settings)
        migrate.upgrade(engine, settings.publisher_authority)
        rc.execute(rc.primary, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        archive = Archive(settings, engine)
        files = generate(root / "demo", PRODUCTS, seed=2012)
        archive.ingest(files[:-1])
        accounts = make_accounts(archive)
        ra, dec = rc.execute(rc.primary, "SELECT s_ra, s_dec FROM ivoa.obscore "
                             "WHERE s_ra IS NOT NULL ORDER BY obs_publisher_did "
                             "LIMIT 1")[0]
        rc.wait_caught_up()
        server = start_server(archive, extra_env=rc.env(settings))
        yield Site(rc, archive, files[-1], server, accounts, float(ra), float(dec))
    finally:
        if server is not None:
            stop_server(server.process)
        rc.stop()
        # removing three clusters' files takes seconds: not in the test's time
        subprocess.Popen(["rm", "-rf", str(root)], start_new_session=True)


def reset(rc: ReplicatedCluster) -> None:
    for node in rc.nodes():
        rc.execute(node, "SELECT pg_stat_statements_reset()")


def calls(rc: ReplicatedCluster, pattern: str) -> list[int]:
    """Return, per node (primary first), the calls of statements like ``pattern``."""
    out = []
    for node in rc.nodes():
        rows = rc.execute(node, (
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE "
            "query ILIKE %s AND query NOT ILIKE '%%pg_stat_statements%%' AND "
            "dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"),
            (pattern,))
        out.append(int(rows[0][0]))
    return out


def rows_of(content: bytes) -> int:
    return len(parse_single_table(io.BytesIO(content)).array)


def tap_sync(site: Site, adql: str, **kw: object) -> requests.Response:
    return requests.post(site.server.url + "/tap/sync", timeout=60, data={
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql}, **kw)  # type: ignore[arg-type]


def tap_async(site: Site, adql: str) -> bytes:
    r = requests.post(site.server.url + "/tap/async", timeout=60, data={
        "REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql, "PHASE": "RUN"})
    assert r.status_code == 200, r.text  # followed the 303 to the job
    job = r.url
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        phase = requests.get(job + "/phase", timeout=30).text.strip()
        if phase in ("COMPLETED", "ERROR", "ABORTED"):
            break
        time.sleep(0.2)
    assert phase == "COMPLETED", requests.get(job, timeout=30).text
    result = requests.get(job + "/results/result", timeout=30)
    assert result.status_code == 200
    return result.content


def positional(site: Site) -> dict[str, tuple[str, dict[str, str]]]:
    ra, dec = site.ra, site.dec
    return {
        "scs": ("/scs", {"RA": str(ra), "DEC": str(dec), "SR": "0.5"}),
        "sia2": ("/sia2/query", {"POS": f"CIRCLE {ra} {dec} 0.5"}),
        "ssa": ("/ssap", {"REQUEST": "queryData", "POS": f"{ra},{dec}",
                          "SIZE": "180"}),
    }


def test_positional_and_tap_queries_run_on_standbys(site: Site) -> None:
    rc = site.rc
    for name, (path, params) in positional(site).items():
        reset(rc)
        r = site.server.get(path, params=params)
        assert r.status_code == 200, (name, r.text[:500])
        assert rows_of(r.content) >= 1, name
        seen = calls(rc, "%hpx.lo%")
        assert seen[0] == 0 and sum(seen[1:]) >= 1, (name, seen)

    reset(rc)
    adql = "SELECT TOP 5 obs_publisher_did, s_ra FROM ivoa.obscore ORDER BY s_ra"
    r = tap_sync(site, adql)
    assert r.status_code == 200, r.text[:500]
    assert rows_of(r.content) == 5
    seen = calls(rc, "%ivoa.obscore%s_ra%")
    assert seen[0] == 0 and sum(seen[1:]) >= 1, seen

    reset(rc)
    assert rows_of(tap_async(site, adql.replace("TOP 5", "TOP 3"))) == 3
    seen = calls(rc, "%ivoa.obscore%s_ra%")
    assert seen[0] == 0 and sum(seen[1:]) >= 1, seen
    # the job's state was written on the primary
    assert calls(rc, "%UPDATE uws.job%")[0] >= 1


def running_tap(rc: ReplicatedCluster) -> list[int]:
    """Return, per node, how many backends run a TAP query now.

    A TAP query is read through a cursor: the running statement is its FETCH.
    """
    return [int(rc.execute(node, (
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
        "query LIKE 'FETCH%%tap_query%%' AND pid <> pg_backend_pid()"))[0][0])
        for node in rc.nodes()]


def test_abort_cancels_a_job_query_running_on_a_standby(site: Site) -> None:
    rc = site.rc
    base = site.server.url + "/tap/async"
    r = requests.post(base, timeout=30, data={
        "LANG": "ADQL", "PHASE": "RUN", "QUERY":
        "SELECT COUNT(*) FROM ivoa.ObsCore AS a, ivoa.ObsCore AS b, "
        "ivoa.ObsCore AS c, ivoa.ObsCore AS d, ivoa.ObsCore AS f"})
    job = r.url
    deadline = time.monotonic() + 30
    while sum(running_tap(rc)[1:]) == 0:
        assert time.monotonic() < deadline, "the job's query never ran on a standby"
        time.sleep(0.2)
    assert running_tap(rc)[0] == 0
    assert requests.get(job + "/phase", timeout=30).text.strip() == "EXECUTING"
    r = requests.post(job + "/phase", data={"PHASE": "ABORT"}, timeout=30)
    assert b"<uws:phase>ABORTED</uws:phase>" in r.content
    deadline = time.monotonic() + 10
    while sum(running_tap(rc)) > 0:
        assert time.monotonic() < deadline, "the aborted query still runs"
        time.sleep(0.2)
    assert requests.get(job + "/phase", timeout=30).text.strip() == "ABORTED"


def test_reads_spread_over_both_standbys(site: Site) -> None:
    rc = site.rc
    path, params = positional(site)["scs"]
    reset(rc)
    for _ in range(12):
        assert site.server.get(path, params=params).status_code == 200
    seen = calls(rc, "%hpx.lo%")
    assert seen[0] == 0 and seen[1] >= 1 and seen[2] >= 1, seen


def test_access_scope_applies_on_standbys(site: Site) -> None:
    """A member sees proprietary products on a standby; the public does not."""
    rc = site.rc
    adql = "SELECT COUNT(*) AS n FROM ivoa.obscore"
    reset(rc)
    public = tap_sync(site, adql)
    member = tap_sync(site, adql, headers=site.accounts.member.bearer)
    assert public.status_code == member.status_code == 200
    n_public = int(parse_single_table(io.BytesIO(public.content)).array[0][0])
    n_member = int(parse_single_table(io.BytesIO(member.content)).array[0][0])
    assert n_member > n_public
    seen = calls(rc, "%count%ivoa.obscore%")
    assert seen[0] == 0 and sum(seen[1:]) == 2, seen


def test_writes_and_uploads_land_on_the_primary(site: Site) -> None:
    rc = site.rc
    reset(rc)
    votable = (b'<?xml version="1.0"?><VOTABLE version="1.4" '
               b'xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>'
               b'<FIELD name="ra" datatype="double"/><FIELD name="dec" '
               b'datatype="double"/><DATA><TABLEDATA><TR><TD>'
               + str(site.ra).encode() + b"</TD><TD>" + str(site.dec).encode()
               + b"</TD></TR></TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>")
    r = requests.post(site.server.url + "/tap/sync", timeout=60, data={
        "REQUEST": "doQuery", "LANG": "ADQL", "UPLOAD": "mine,param:t",
        "QUERY": "SELECT ra, dec FROM TAP_UPLOAD.mine"},
        files={"t": ("t.xml", votable)})
    assert r.status_code == 200, r.text[:500]
    assert rows_of(r.content) == 1
    made = calls(rc, "%CREATE TEMP TABLE%")
    assert made[0] == 1 and made[1:] == [0, 0], made

    # an upload is ingested on the primary, and its uploader can fetch it at
    # once, though no standby replays it
    for standby in rc.standbys:
        rc.execute(standby, "SELECT pg_wal_replay_pause()")
    try:
        raw = site.held_back.read_bytes()
        r = requests.put(site.server.url + "/upload/" + site.held_back.name,
                         data=raw, headers=site.accounts.reducer.bearer, timeout=60)
        assert r.status_code == 201, r.text[:500]
        got = requests.get(r.headers["Location"], timeout=60,
                           headers=site.accounts.reducer.bearer)
        assert got.status_code == 200 and got.content == raw
        inserted = calls(rc, "%INSERT INTO archive.%")
        assert inserted[0] >= 1 and inserted[1:] == [0, 0], inserted
        found = calls(rc, "%FROM archive.version v%archive.visible%")
        assert found[0] >= 1, found
    finally:
        for standby in rc.standbys:
            rc.execute(standby, "SELECT pg_wal_replay_resume()")
    rc.wait_caught_up()


def kill_and_restart(standby: EmbeddedCluster, after: float, down: float) -> None:
    time.sleep(after)
    standby.stop("immediate")
    time.sleep(down)
    standby.start()


def test_a_standby_killed_under_load_fails_no_request(site: Site) -> None:
    rc = site.rc
    path, params = positional(site)["scs"]
    failures: list[str] = []
    done = threading.Event()
    count = [0]

    def load(i: int) -> None:
        with requests.Session() as http:
            while not done.is_set():
                try:
                    if i % 2:
                        r = http.get(site.server.url + path, params=params, timeout=30)
                    else:
                        r = http.post(site.server.url + "/tap/sync", timeout=30, data={
                            "REQUEST": "doQuery", "LANG": "ADQL",
                            "QUERY": "SELECT TOP 2 obs_id FROM ivoa.obscore"})
                    if r.status_code != 200 or b"</VOTABLE>" not in r.content:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    count[0] += 1
                except requests.RequestException as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        kill_and_restart(rc.standbys[0], after=1.5, down=3.0)
        time.sleep(1.0)
    finally:
        done.set()
        for t in threads:
            t.join(60)
    assert not failures, failures[:5]
    assert count[0] > 20
    # the restarted standby is put back: reads reach it again
    wait_for_reads(site, rc, path, params, "the restarted standby got no reads")


def wait_for_reads(site: Site, rc: ReplicatedCluster, path: str,
                   params: dict[str, str], failure: str) -> None:
    """Wait (20 s at most) until the first standby, caught up, gets cone searches."""
    rc.wait_caught_up()
    deadline = time.monotonic() + 20
    while True:
        reset(rc)
        for _ in range(8):
            assert site.server.get(path, params=params).status_code == 200
        if calls(rc, "%hpx.lo%")[1] >= 1:
            return
        assert time.monotonic() < deadline, failure
        time.sleep(0.5)


def db_status(settings: Settings, capsys: pytest.CaptureFixture[str],
              as_json: bool = False) -> str:
    """Return what ``vo-archive db status`` prints for ``settings``."""
    capsys.readouterr()
    assert dbcmd.cmd_status(argparse.Namespace(json=as_json, credentials=False),
                            settings) == 0
    return capsys.readouterr().out


def test_a_lagging_standby_is_skipped_and_comes_back(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    rc = site.rc
    lagging = rc.standbys[0]
    path, params = positional(site)["scs"]
    status = json.loads(db_status(site.archive.settings, capsys, as_json=True))
    assert [(n["role"], n["healthy"]) for n in status["nodes"]] == [
        ("primary", True), ("standby", True), ("standby", True)], status["nodes"]
    rc.execute(lagging, "SELECT pg_wal_replay_pause()")
    try:
        rc.execute(rc.primary, "CREATE TABLE IF NOT EXISTS lag_probe (x int)")
        rc.execute(rc.primary, "INSERT INTO lag_probe VALUES (1)")
        # the bound is 2 s, checks every 0.2 s
        time.sleep(2.0 + 1.0)
        reset(rc)
        for _ in range(10):
            assert site.server.get(path, params=params).status_code == 200
        seen = calls(rc, "%hpx.lo%")
        assert seen[0] == 0 and seen[1] == 0 and seen[2] >= 10, seen
        text = db_status(site.archive.settings, capsys)
        lines = {line.split(":", 1)[0].strip(): line for line in text.splitlines()}
        assert "UNHEALTHY" in lines["standby 1"], text
        assert "behind by more than 2 s" in lines["standby 1"], text
        assert " healthy" in lines["standby 2"] and " healthy" in lines["primary"]
    finally:
        rc.execute(lagging, "SELECT pg_wal_replay_resume()")
    wait_for_reads(site, rc, path, params, "the standby did not come back")


def test_db_standby_add_makes_a_streaming_standby(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    folder = site.rc.home / "standby-cli"
    env = dict(os.environ, VO_ARCHIVE_HOME=str(site.rc.home), VO_ARCHIVE_DSN="")
    made = subprocess.run(
        [sys.executable, "-m", "vo_archive", "db", "standby", "add", str(folder)],
        env=env, capture_output=True, text=True, timeout=180)
    assert made.returncode == 0, made.stderr
    try:
        dsn = made.stdout.split('read_dsns = ["', 1)[1].split('"', 1)[0]
        site.rc.standbys.append(EmbeddedCluster(folder))
        site.rc.wait_caught_up()
        settings = dataclasses.replace(site.archive.settings, read_dsns=(dsn,))
        # one look cannot time a lag: when the primary wrote WAL since (its
        # periodic running-transactions record) and the new standby has replayed
        # no transaction yet, it says "lag unknown"; it is healthy at a look
        # once it has replayed all the primary wrote
        deadline = time.monotonic() + 30
        while True:
            nodes = json.loads(db_status(settings, capsys, as_json=True))["nodes"]
            if nodes[1]["healthy"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [n["role"] for n in nodes] == ["primary", "standby"]
        assert nodes[1]["healthy"], nodes
        port = EmbeddedCluster(folder).info.port
        assert nodes[1]["where"] == f"127.0.0.1:{port}/pessto"
    finally:
        site.rc.standbys = site.rc.standbys[:2]
        stop = argparse.Namespace(dir=str(folder))
        assert dbcmd.cmd_standby_stop(stop, site.archive.settings) == 0
    assert "stopped" in capsys.readouterr().out
