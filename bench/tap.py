"""TAP benchmark: sync cone latency, full-table aggregates, async job latency.

Builds its own archive in a private PostgreSQL cluster, fabricates ObsCore rows
(random positions over the sky, small footprints), serves it with
``vo-archive serve`` and ``vo-archive worker``, and prints:

- the median latency of sync ADQL cone queries
  (``SELECT TOP 100 ... WHERE CONTAINS(POINT(...), CIRCLE(..., 0.5)) = 1``),
- the median latency of a full-table aggregate over ivoa.ObsCore,
  at 20,000 rows and again at 1,000,000 rows (``--big 0`` skips the latter),
- the median time from async job creation (POST with PHASE=RUN) to
  COMPLETED for a small query.

Printed lines (after the fabrication times and load averages)::

    [N rows] sync cone (TOP 100, r=0.5 deg): median X ms, p90 X ms (N queries)
    [N rows] full-table aggregate: median X ms (N queries)
    [N rows] async small job, creation to COMPLETED: median X ms, max X ms (N jobs)

Usage: ``python bench/tap.py [--small 20000] [--big 1000000] [--runs 50]
[--smoke]``; ``--smoke`` (300 rows, a few queries and jobs) checks the script
and measures nothing.
Targets on the 2-core reference machine: cone median <= 20 ms at 20,000 rows,
async small job <= 300 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import scratch_dir, stop_serve
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.cluster import EmbeddedCluster, free_port
from vo_archive.db.engine import get_engine

FABRICATE = """
INSERT INTO archive.product (product_key, instrument, mode, category, level,
    product_type, description, eso_phase3, run_id, object, night, release_date)
SELECT 'bench_' || g, 'EFOSC',
       CASE WHEN g %% 3 = 0 THEN 'imaging' ELSE 'spectroscopy' END,
       'science', 'final', 'spectrum', 'fabricated for the benchmark', 'yes',
       %(run)s, 'OBJ' || (g %% 5000), date '2012-01-01' + (g %% 3000),
       now() - interval '400 days'
FROM generate_series(%(lo)s, %(hi)s) g;
INSERT INTO archive.version (product_id, version_no, is_current, filename,
    storage_key, file_size, sha256, md5, header, hdus, mjd_obs, mjd_end, exptime,
    ra, dec, pos, footprint, fov, em_min, em_max)
SELECT product_id, 1, true, product_key || '.fits', 'bench/' || product_id,
       100000 + product_id, lpad(to_hex(product_id), 64, '0'),
       lpad(to_hex(product_id), 32, '0'), '{}'::jsonb, 1, mjd, mjd + 0.01, 900,
       ra, dec, spoint(radians(ra), radians(dec)),
       format('{(%%sd,%%sd),(%%sd,%%sd),(%%sd,%%sd),(%%sd,%%sd)}',
              ra - 0.03, dec - 0.03, ra + 0.03, dec - 0.03,
              ra + 0.03, dec + 0.03, ra - 0.03, dec + 0.03)::spoly,
       0.06, 3.4e-7, 1.0e-6
FROM (SELECT product_id, product_key, 56000 + random() * 3000 AS mjd,
             0.05 + random() * 359.9 AS ra,
             degrees(asin(2 * random() - 1)) * 0.99 AS dec
      FROM archive.product WHERE product_key LIKE 'bench\\_%%'
      AND product_id BETWEEN %(lo)s AND %(hi)s) s;
"""

CONE = ("SELECT TOP 100 obs_publisher_did, s_ra, s_dec, t_min, access_url "
        "FROM ivoa.ObsCore WHERE CONTAINS(POINT('ICRS', s_ra, s_dec), "
        "CIRCLE('ICRS', {ra:.4f}, {dec:.4f}, 0.5)) = 1")
AGGREGATE = ("SELECT dataproduct_type, COUNT(*) AS n, AVG(t_exptime) AS mean_exp, "
             "MIN(t_min) AS earliest FROM ivoa.ObsCore GROUP BY dataproduct_type")
SMALL = "SELECT TOP 10 obs_id, s_ra, s_dec FROM ivoa.ObsCore"


def fabricate(dsn: str, upto: int, have: int) -> None:
    """Add products/versions until there are ``upto`` fabricated rows."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("INSERT INTO archive.run (name, eso_run, programme, instrument, "
                "first_night, last_night) VALUES ('BENCH', '188.D-3003(A)', "
                "'188.D-3003', 'EFOSC', '2012-01-01', '2020-12-31') ON CONFLICT (name) "
                "DO UPDATE SET name = excluded.name RETURNING run_id")
    run = cur.fetchone()[0]
    step = 100_000
    for lo in range(have + 1, upto + 1, step):
        hi = min(upto, lo + step - 1)
        cur.execute(FABRICATE, {"run": run, "lo": lo, "hi": hi})
    cur.execute("ANALYZE")
    conn.close()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "vo_archive", *args], env=env,
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=Path(__file__).parents[1])


def timed(session: requests.Session, url: str, query: str) -> float:
    t0 = time.perf_counter()
    r = session.post(url + "/tap/sync", data={"LANG": "ADQL", "QUERY": query},
                     timeout=600)
    elapsed = time.perf_counter() - t0
    if r.status_code != 200 or b'value="ERROR"' in r.content:
        raise RuntimeError(r.text[:500])
    return elapsed


def async_latency(session: requests.Session, url: str) -> float:
    t0 = time.perf_counter()
    r = session.post(url + "/tap/async", data={"LANG": "ADQL", "QUERY": SMALL,
                                               "PHASE": "RUN"},
                     allow_redirects=False, timeout=60)
    job = r.headers["Location"]
    while True:
        doc = session.get(job, params={"WAIT": "10"}, timeout=60).text
        phase = re.search(r"<uws:phase>(\w+)<", doc)
        if phase and phase.group(1) in ("COMPLETED", "ERROR", "ABORTED"):
            break
    elapsed = time.perf_counter() - t0
    if phase.group(1) != "COMPLETED":
        raise RuntimeError(doc)
    session.delete(job, allow_redirects=False, timeout=60)
    return elapsed


def measure(url: str, runs: int, label: str) -> None:
    session = requests.Session()
    rng = random.Random(1)
    timed(session, url, CONE.format(ra=10, dec=10))  # warm up
    cones = [timed(session, url, CONE.format(ra=rng.uniform(0, 360),
                                             dec=rng.uniform(-80, 80)))
             for _ in range(runs)]
    aggs = [timed(session, url, AGGREGATE) for _ in range(max(3, runs // 10))]
    print(f"[{label}] sync cone (TOP 100, r=0.5 deg): median "
          f"{statistics.median(cones) * 1000:.1f} ms, p90 "
          f"{sorted(cones)[int(len(cones) * 0.9)] * 1000:.1f} ms ({runs} queries)")
    print(f"[{label}] full-table aggregate: median "
          f"{statistics.median(aggs) * 1000:.1f} ms ({len(aggs)} queries)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=20_000)
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=20, help="async jobs timed")
    ap.add_argument("--smoke", action="store_true",
                    help="300 rows, a few queries: checks the script, measures "
                    "nothing")
    args = ap.parse_args()
    if args.smoke:
        args.small, args.big, args.runs, args.jobs = 300, 0, 5, 3
    root = scratch_dir("vo-archive-bench-")
    cluster = EmbeddedCluster(root / "pgdata")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cluster.init()
        dsn = cluster.dsn()
        settings = Settings(home=root, dsn=dsn)
        migrate.upgrade(get_engine(settings), settings.publisher_authority)
        t0 = time.perf_counter()
        fabricate(dsn, args.small, 0)
        print(
            f"fabricated {args.small} ObsCore rows in {time.perf_counter() - t0:.1f} s"
        )
        port = free_port()
        env = dict(os.environ, VO_ARCHIVE_HOME=str(root), VO_ARCHIVE_DSN=dsn)
        procs.append(start(["serve", "--port", str(port), "--workers", "2"], env,
                           root / "server.log"))
        procs.append(start(["worker"], env, root / "worker.log"))
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                requests.get(url + "/tap/availability", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        time.sleep(2)
        print(f"load average before measuring: {os.getloadavg()}")
        measure(url, args.runs, f"{args.small} rows")
        session = requests.Session()
        async_latency(session, url)
        lat = [async_latency(session, url) for _ in range(args.jobs)]
        print(f"[{args.small} rows] async small job, creation to COMPLETED: median "
              f"{statistics.median(lat) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms "
              f"({args.jobs} jobs)")
        if args.big > args.small:
            t0 = time.perf_counter()
            fabricate(dsn, args.big, args.small)
            print(f"fabricated up to {args.big} rows in "
                  f"{time.perf_counter() - t0:.1f} s")
            print(f"load average before measuring: {os.getloadavg()}")
            measure(url, max(10, args.runs // 2), f"{args.big} rows")
    finally:
        for p in procs:
            stop_serve(p)
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
