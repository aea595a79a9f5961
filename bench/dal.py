"""Benchmark of the positional DAL services and of the database cone search.

HTTP part: cone searches against SCS, SIA 2.0 and SSA on an archive of
``--products`` demo products (made once under ``--home``, reused afterwards),
served by ``vo-archive serve``; median and p95 latency and requests/s at 1, 4
and 16 concurrent clients, each with a new connection per request and with one
kept-alive connection per client.

Database part: on a table of ``--rows`` uniform random positions in a database
of its own (built once, clustered on the HEALPix index), the latency of a cone
search through the HEALPix B-tree path (ranges made here by
:func:`vo_archive.vo.sky.cone_ranges`, joined as ``unnest`` arrays, generic plan),
through pgSphere's GiST index and through q3c,
interleaved cone by cone, at radii 1″, 1′, 10′ and 1°, with the ``SELECT 1``
round-trip floor and the ratios to pgSphere.

    python bench/dal.py [--home DIR] [--products N] [--rows N] [--skip-http|--skip-db]
                        [--smoke]

Prints a table per part: ``service conn clients median ms p95 ms req/s`` for
HTTP, and ``radius rows HEALPix ms client ms (ranges) GiST ms q3c ms
HEALPix/GiST client/GiST (query only) q3c/GiST`` for the database (``nan`` where
the extension or q3c is left out). ``--smoke`` (200 products and 20,000 rows in a
scratch home removed afterwards, a few cones, short HTTP cells) checks the script
and measures nothing.

Prints figures; the numbers depend on the machine's load, so say under what
load they were taken.
"""

from __future__ import annotations

import argparse
import http.client
import io
import itertools
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import child_env, prepare_archive, scratch_dir, stop_embedded
from vo_archive.config import Settings
from vo_archive.db.cluster import free_port
from vo_archive.db.engine import get_engine, resolve_dsn
from vo_archive.vo.sky import cone_ranges, healpix29

RADII = {"1″": 1 / 3600, "1′": 1 / 60, "10′": 10 / 60, "1°": 1.0}


# -- HTTP ------------------------------------------------------------------------

def positions(settings: Settings, n: int, seed: int = 1) -> list[tuple[float, float]]:
    """Return ``n`` product positions to search around."""
    from sqlalchemy import text

    with get_engine(settings).connect() as conn:
        rows = conn.execute(text("SELECT ra, dec FROM pessto.products "
                                 "WHERE ra IS NOT NULL")).all()
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(rows), n)
    return [(float(rows[i][0]), float(rows[i][1])) for i in picks]


def request_paths(service: str, pos: list[tuple[float, float]]) -> list[str]:
    """Return the request paths of cone searches of 0.05° radius."""
    out = []
    for ra, dec in pos:
        if service == "SCS":
            out.append(f"/scs?RA={ra}&DEC={dec}&SR=0.05")
        elif service == "SIA2":
            out.append("/sia2/query?" + urllib.parse.urlencode(
                {"POS": f"CIRCLE {ra} {dec} 0.05"}))
        else:
            out.append(f"/ssap?REQUEST=queryData&POS={ra},{dec}&SIZE=0.1")
    return out


def run_clients(port: int, paths: list[str], clients: int, keepalive: bool,
                seconds: float) -> tuple[list[float], float]:
    """Run ``clients`` threads issuing requests for ``seconds``; return latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    errors: list[str] = []

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        i = k
        while time.monotonic() < stop:
            path = paths[i % len(paths)]
            i += clients
            t0 = time.perf_counter()
            if not keepalive:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if not keepalive:
                conn.close()
            mine.append(time.perf_counter() - t0)
            if resp.status != 200 or b'value="OK"' not in body:
                errors.append(f"{resp.status} {path}")
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[0]}")
    return latencies, time.monotonic() - t0


def bench_http(settings: Settings, seconds: float, workers: int,
               services: list[str]) -> None:
    """Print HTTP latency and throughput of the three cone services."""
    port = free_port()
    env = child_env(VO_ARCHIVE_HOME=str(settings.home))
    server = subprocess.Popen(
        [sys.executable, "-m", "vo_archive", "serve", "--port", str(port),
         "--workers", str(workers)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(300):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=2).request(
                    "GET", "/"
                )
                break
            except OSError:
                time.sleep(0.2)
        pos = positions(settings, 500)
        with get_engine(settings).connect() as conn:
            from sqlalchemy import text
            n = conn.execute(text("SELECT count(*) FROM archive.product")).scalar_one()
        print(f"\nHTTP cone searches (radius 0.05°) on {n} products, "
              f"gunicorn {workers} workers x 4 threads, {seconds:.0f} s per cell")
        print(f"{'service':8} {'conn':10} {'clients':>7} {'median ms':>10} "
              f"{'p95 ms':>8} {'req/s':>8}")
        for service in services:
            paths = request_paths(service, pos)
            run_clients(port, paths, 2, True, min(1.0, seconds))  # warm up
            for keepalive in (False, True):
                for clients in (1, 4, 16):
                    lat, elapsed = run_clients(port, paths, clients, keepalive, seconds)
                    lat.sort()
                    print(f"{service:8} {'keep-alive' if keepalive else 'new':10} "
                          f"{clients:7d} {1000 * statistics.median(lat):10.2f} "
                          f"{1000 * lat[int(0.95 * (len(lat) - 1))]:8.2f} "
                          f"{len(lat) / elapsed:8.0f}", flush=True)
    finally:
        os.killpg(server.pid, 15)
        server.wait(20)


# -- Database ----------------------------------------------------------------------

def build_table(dsn: str, rows: int) -> None:
    """Create (once) ``bench.sky`` with ``rows`` uniform positions and all indexes."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION IF NOT EXISTS pg_sphere")
    cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'q3c'")
    if cur.fetchone() is not None:
        cur.execute("CREATE EXTENSION IF NOT EXISTS q3c")
    cur.execute("CREATE SCHEMA IF NOT EXISTS bench")
    cur.execute("SELECT to_regclass('bench.sky') IS NOT NULL")
    if cur.fetchone()[0]:
        # (the planner's count: a table emptied since keeps its old statistics)
        cur.execute(
            "SELECT reltuples::bigint * (EXISTS (SELECT 1 FROM bench.sky))::int "
            "FROM pg_class WHERE oid = 'bench.sky'::regclass"
        )
        if abs(cur.fetchone()[0] - rows) < rows * 0.01:
            conn.close()
            return
        cur.execute("DROP TABLE bench.sky")
    t0 = time.monotonic()
    cur.execute("CREATE TABLE bench.sky (id bigint, ra double precision, "
                "dec double precision, healpix29 bigint, pos spoint)")
    rng = np.random.default_rng(2024)
    chunk = 1_000_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        ra = rng.uniform(0, 360, n)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
        hp = healpix29(ra, dec)
        buf = io.StringIO()
        for i, (a, d, h, ar, dr) in enumerate(zip(
                ra.tolist(), dec.tolist(), hp.tolist(), np.radians(ra).tolist(),
                np.radians(dec).tolist(), strict=True)):
            buf.write(f"{start + i}\t{a!r}\t{d!r}\t{h}\t({ar!r},{dr!r})\n")
        buf.seek(0)
        cur.copy_expert("COPY bench.sky (id, ra, dec, healpix29, pos) FROM STDIN", buf)
        print(f"  loaded {start + n} rows", flush=True)
    cur.execute("CREATE INDEX sky_hpx ON bench.sky (healpix29)")
    cur.execute("CLUSTER bench.sky USING sky_hpx")
    cur.execute("CREATE INDEX sky_pos ON bench.sky USING gist (pos)")
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'q3c'")
    if cur.fetchone() is not None:
        cur.execute("CREATE INDEX sky_q3c ON bench.sky (q3c_ang2ipix(ra, dec))")
    cur.execute("VACUUM ANALYZE bench.sky")
    conn.close()
    print(f"  built bench.sky ({rows} rows) in {time.monotonic() - t0:.0f} s")


def bench_db(dsn: str, rows: int, cones: int, q3c: bool = True) -> None:
    """Print interleaved cone-search latencies of the three index paths."""
    build_table(dsn, rows)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    # q3c is optional (only this comparison uses it): left out when not installed
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'q3c'")
    q3c = q3c and cur.fetchone() is not None
    cur.execute("SET plan_cache_mode = force_generic_plan")
    cur.execute("SET max_parallel_workers_per_gather = 0")
    # the generic plan's row estimate of a range join is huge on 10M rows, which
    # would JIT-compile every execution (~5 ms); no cone search needs JIT
    cur.execute("SET jit = off")
    cur.execute("PREPARE hp(bigint[], bigint[], float8, float8, float8) AS "
                "SELECT s.id FROM unnest($1, $2) AS r(lo, hi) JOIN bench.sky s "
                "ON s.healpix29 >= r.lo AND s.healpix29 < r.hi "
                "WHERE s.pos <-> spoint(radians($3), radians($4)) <= radians($5)")
    # the ranges made in the server by the archive's extension, when installed
    cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vo_archive_cone'")
    server_ranges = cur.fetchone() is not None
    if server_ranges:
        cur.execute("CREATE EXTENSION IF NOT EXISTS vo_archive_cone")
        # as the services bind a cone: degrees for the ranges, radians for the
        # exact test
        cur.execute("PREPARE hs(float8, float8, float8, float8, float8, float8, "
                    "float8) AS "
                    "SELECT s.id FROM healpix_cone_ranges($1, $2, $3, $4) AS r "
                    "JOIN bench.sky s ON s.healpix29 >= r.lo AND s.healpix29 < r.hi "
                    "WHERE s.pos <-> spoint($5, $6) <= $7")
    cur.execute("PREPARE gi(float8, float8, float8) AS SELECT id FROM bench.sky "
                "WHERE pos <@ scircle(spoint($1, $2), $3)")
    cur.execute("PREPARE one AS SELECT 1")
    rng = np.random.default_rng(99)

    range_times: list[float] = []

    def run_hp(ra: float, dec: float, r: float) -> int:
        # the ranges are made here, inside the timing (and also timed apart); the
        # statement is written directly (numbers only): psycopg2's list
        # adaptation costs ~20 µs
        t0 = time.perf_counter()
        ranges = cone_ranges(ra, dec, r, rows=rows)
        lo = ",".join([str(a) for a, _ in ranges])
        hi = ",".join([str(b) for _, b in ranges])
        sql = f"EXECUTE hp('{{{lo}}}', '{{{hi}}}', {ra!r}, {dec!r}, {r!r})"
        range_times.append(time.perf_counter() - t0)
        cur.execute(sql)
        return len(cur.fetchall())

    def run_hs(ra: float, dec: float, r: float) -> int:
        # every statement is written directly, numbers only (psycopg2's
        # adaptation of each value costs microseconds)
        rad = math.radians
        cur.execute(f"EXECUTE hs({ra!r}, {dec!r}, {r!r}, {float(rows)!r}, "
                    f"{rad(ra)!r}, {rad(dec)!r}, {rad(r)!r})")
        return len(cur.fetchall())

    def run_gi(ra: float, dec: float, r: float) -> int:
        cur.execute(f"EXECUTE gi({math.radians(ra)!r}, {math.radians(dec)!r}, "
                    f"{math.radians(r)!r})")
        return len(cur.fetchall())

    def run_q3(ra: float, dec: float, r: float) -> int:
        # q3c needs the values at planning time (a generic plan scans the table)
        cur.execute("SELECT id FROM bench.sky WHERE q3c_radial_query(ra, dec, %s, %s, "
                    "%s)", (ra, dec, r))
        return len(cur.fetchall())

    floor = []
    for _ in range(500):
        t0 = time.perf_counter()
        cur.execute("EXECUTE one")
        cur.fetchall()
        floor.append(time.perf_counter() - t0)
    print(f"\nDatabase cone search on {rows} uniform rows (clustered on HEALPix), "
          f"generic plans, interleaved; SELECT 1 floor "
          f"{1000 * statistics.median(floor):.3f} ms")
    print("HEALPix: ranges made in the server (extension vo_archive_cone"
          + ("" if server_ranges else ", not installed: column left empty")
          + "); HEALPix client: ranges made here in Python, (ranges) their time")
    print(
        f"{'radius':>6} {'rows':>7} {'HEALPix ms':>11} {'client ms':>10} "
        f"{'(ranges)':>9} {'GiST ms':>8} {'q3c ms':>8} {'HEALPix/GiST':>12} "
        f"{'client/GiST':>11} {'(query only)':>12} {'q3c/GiST':>9}"
    )
    methods = {"hp": run_hp, "gi": run_gi}
    if q3c:
        methods["q3"] = run_q3
    if server_ranges:
        methods["hs"] = run_hs
    orders = list(itertools.permutations(methods))
    for label, r in RADII.items():
        times: dict[str, list[float]] = {m: [] for m in methods}
        range_times.clear()
        found = []
        n = cones if r < 0.5 else max(50, cones // 4)
        for k in range(n):
            ra = float(rng.uniform(0, 360))
            dec = float(np.degrees(np.arcsin(rng.uniform(-1, 1))))
            # every order in turn, so that each method follows each other one
            # equally often (a rotation put HEALPix after q3c's 5 ms probes,
            # which flush the caches, twice as often as GiST)
            order = orders[k % len(orders)]
            counts = {}
            for m in order:
                t0 = time.perf_counter()
                counts[m] = methods[m](ra, dec, r)
                times[m].append(time.perf_counter() - t0)
            if len(set(counts.values())) != 1:
                raise AssertionError(f"methods disagree at {ra},{dec},{r}: {counts}")
            found.append(counts["hp"])
        med = {m: 1000 * statistics.median(v) for m, v in times.items()}
        query_only = 1000 * statistics.median(
            [t - c for t, c in zip(times["hp"], range_times, strict=True)])
        ranges_ms = 1000 * statistics.median(range_times)
        hs = med.get("hs", math.nan)
        q3 = med.get("q3", math.nan)
        print(f"{label:>6} {statistics.mean(found):7.1f} {hs:11.3f} {med['hp']:10.3f} "
              f"{ranges_ms:9.3f} {med['gi']:8.3f} {q3:8.3f} "
              f"{hs / med['gi']:12.2f} {med['hp'] / med['gi']:11.2f} "
              f"{query_only / med['gi']:12.2f} {q3 / med['gi']:9.2f}", flush=True)
    conn.close()


def main() -> int:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, default=Path("var/bench-dal"))
    ap.add_argument("--products", type=int, default=20_000)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--cones", type=int, default=400,
                    help="cones per radius in the database part")
    ap.add_argument("--seconds", type=float, default=5.0,
                    help="duration of each HTTP measurement")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--services", default="SCS,SIA2,SSAP",
                    help="comma-separated services to measure over HTTP")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--skip-db", action="store_true")
    ap.add_argument("--no-q3c", action="store_true",
                    help="leave q3c out of the database part (its 5-7 ms of "
                    "planning per cone cools the caches for the others)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny archive and table, short cells: checks the script, "
                    "measures nothing")
    args = ap.parse_args()
    if args.smoke:
        args.products, args.rows, args.cones, args.seconds = 200, 20_000, 8, 0.3
        args.workers = 1
        args.home = scratch_dir("vo-archive-bench-dal-")
    home = args.home.absolute()
    home.mkdir(parents=True, exist_ok=True)
    try:
        run(args, home)
    finally:
        if args.smoke:
            stop_embedded(home)
            shutil.rmtree(home, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, home: Path) -> None:
    """Run the parts of the benchmark asked for."""
    print(f"load average before: {os.getloadavg()}")
    if not args.skip_http:
        settings = prepare_archive(home, args.products)
        bench_http(settings, args.seconds, args.workers,
                   [x.strip().upper() for x in args.services.split(",")])
    if not args.skip_db:
        settings = Settings(home=home)
        dsn = resolve_dsn(settings)
        admin = psycopg2.connect(dsn)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = 'bench_sky'")
            if cur.fetchone() is None:
                cur.execute("CREATE DATABASE bench_sky")
        admin.close()
        bench_db(dsn.rsplit("/", 1)[0] + "/bench_sky", args.rows, args.cones,
                 q3c=not args.no_q3c)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    raise SystemExit(main())
