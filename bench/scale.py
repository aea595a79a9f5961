"""Cost of running on more than one host: web nodes behind nginx (and standbys).

Serves an archive of ``--products`` demo products (made once under ``--home``,
reused afterwards) with two ``vo-archive serve`` web nodes on one database
(``--workers`` gunicorn workers each, no job workers) and the repository's nginx
configuration (``deploy/nginx/pessto-archive.conf``) in front: one nginx with
node 1 only, one with both nodes. Then:

- throughput of cone searches (SCS, radius 0.05°) and TAP sync ADQL cones (TOP
  50, radius 0.2°) at 16 and 64 concurrent clients (kept-alive connections,
  spread over client processes), against node 1 directly, through nginx to node
  1, and through nginx to both nodes;
- the median latency of one client's cone searches, directly and through each
  nginx, interleaved request by request (the issue's target: through the proxy,
  within 1.5 ms of the direct one-host figure).

Where this version of the archive reads from hot standbys (``read_dsns``), all
of it is done three times: the web nodes reading from the primary alone, from one
and from two standbys of the embedded cluster (``vo-archive db standby add``, made
afresh under the home and stopped at the end); otherwise a line says they are not
configured. The latency's "direct" figure is always a third node on one host
reading from the primary alone, asked in turn with the proxies.

    python bench/scale.py [--home DIR] [--products N] [--seconds S] [--workers W]
                          [--cones N] [--smoke]

Prints one line per cell::

    throughput SCS clients=16 nodes=1 direct standbys=0: R req/s, median X ms,
        p95 X ms, errors N

(on one line), then::

    cone latency, one client (N cones each): direct X ms; nginx to 1 node X ms
        (+D ms); nginx to 2 nodes X ms (+D ms); standbys=S (target: within 1.5 ms)

once per number of standbys S, and a last line ``standbys: ...`` saying which.

The machine has 2 cores shared by the clients, nginx, the nodes and PostgreSQL:
read the figures as the cost of the extra hop, not as scaling. ``--smoke`` (200
products in a scratch home removed afterwards, cells of half a second) checks the
script and measures nothing. Exit status 1 if any request failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import multiprocessing
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bench.common import (
    child_env,
    prepare_archive,
    scratch_dir,
    start_serve,
    stop_embedded,
    stop_serve,
)
from tests.nginx import Nginx, nginx_binary, start_nginx
from vo_archive.config import Settings
from vo_archive.db.engine import get_engine

KINDS = ("SCS", "TAP")
CLIENTS = (16, 64)


def positions(settings: Settings, n: int = 500) -> list[tuple[float, float]]:
    """Return up to ``n`` public product positions to search around."""
    with get_engine(settings).connect() as conn:
        rows = conn.execute(text(
            "SELECT ra, dec FROM pessto.products WHERE ra IS NOT NULL "
            "AND release_date <= now() ORDER BY product_id LIMIT :n"), {"n": n}).all()
    if not rows:
        raise SystemExit("the archive has no public product with a position")
    return [(float(r[0]), float(r[1])) for r in rows]


def request_of(kind: str, pos: tuple[float, float]) -> tuple[str, str, bytes | None]:
    """Return (method, path, body) of one request of ``kind`` around ``pos``."""
    ra, dec = pos
    if kind == "SCS":
        return "GET", f"/scs?RA={ra:.5f}&DEC={dec:.5f}&SR=0.05", None
    # ADQL text with numbers only
    adql = ("SELECT TOP 50 obs_publisher_did, s_ra, s_dec, access_url FROM "  # noqa: S608
            "ivoa.obscore WHERE CONTAINS(POINT('ICRS', s_ra, s_dec), "
            f"CIRCLE('ICRS', {ra:.5f}, {dec:.5f}, 0.2)) = 1")
    body = urllib.parse.urlencode({"LANG": "ADQL", "QUERY": adql}).encode()
    return "POST", "/tap/sync", body


HEADERS = {"Content-Type": "application/x-www-form-urlencoded",
           "Accept-Encoding": "identity"}


def _ask(conn: http.client.HTTPConnection, req: tuple[str, str, bytes | None]
         ) -> bool:
    method, path, body = req
    conn.request(method, path, body=body, headers=HEADERS)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status == 200 and b'name="QUERY_STATUS" value="OK"' in data


def _client_process(port: int, kind: str, threads: int, offset: int, until: float,
                    pos: list[tuple[float, float]], out: Any) -> None:
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def run(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine: list[float] = []
        bad = 0
        i = offset + k
        while time.monotonic() < until:
            req = request_of(kind, pos[i % len(pos)])
            i += 97
            t0 = time.perf_counter()
            try:
                ok = _ask(conn, req)
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            mine.append(time.perf_counter() - t0)
            bad += not ok
        conn.close()
        with lock:
            lat.extend(mine)
            errors[0] += bad

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put((lat, errors[0]))


def throughput(port: int, kind: str, clients: int, seconds: float,
               pos: list[tuple[float, float]]) -> tuple[float, float, float, int]:
    """Run ``clients`` clients for ``seconds``; return req/s, median, p95 (ms), errors.

    The clients are threads spread over up to four processes, so that the
    client's own interpreter lock is not the first limit.
    """
    ctx = multiprocessing.get_context("fork")
    procs_n = min(4, clients)
    out = ctx.Queue()
    start = time.monotonic() + 0.3
    until = start + seconds
    procs = [ctx.Process(target=_client_process, args=(
        port, kind, clients // procs_n + (k < clients % procs_n), k * 1000, until,
        pos, out)) for k in range(procs_n)]
    for p in procs:
        p.start()
    lat: list[float] = []
    errors = 0
    for _ in procs:
        got, bad = out.get(timeout=seconds + 300)
        lat.extend(got)
        errors += bad
    for p in procs:
        p.join(30)
    elapsed = time.monotonic() - start
    if not lat:
        return 0.0, float("nan"), float("nan"), errors
    lat.sort()
    return (len(lat) / elapsed, 1000 * statistics.median(lat),
            1000 * lat[int(0.95 * (len(lat) - 1))], errors)


def latencies(ports: list[int], n: int, pos: list[tuple[float, float]]
              ) -> tuple[list[float], int]:
    """Return each port's median cone latency (ms), asked in turn, and the errors."""
    conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=60) for p in ports]
    lat: list[list[float]] = [[] for _ in ports]
    errors = 0
    for i in range(n):
        req = request_of("SCS", pos[i % len(pos)])
        # each cone asked of every path in turn, starting with another each time
        for j in range(len(ports)):
            k = (i + j) % len(ports)
            t0 = time.perf_counter()
            errors += not _ask(conns[k], req)
            lat[k].append(time.perf_counter() - t0)
    for c in conns:
        c.close()
    return [1000 * statistics.median(x) for x in lat], errors


def main() -> int:
    """Parse arguments, serve two nodes behind nginx, measure, report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, default=Path("var/bench-scale"),
                    help="archive home (made once, reused)")
    ap.add_argument("--products", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=5.0,
                    help="duration of each throughput cell")
    ap.add_argument("--workers", type=int, default=2,
                    help="gunicorn workers per web node")
    ap.add_argument("--cones", type=int, default=1000,
                    help="cones per path for the latency figure")
    ap.add_argument("--smoke", action="store_true",
                    help="a tiny archive, half-second cells: checks the script, "
                    "measures nothing")
    args = ap.parse_args()
    if nginx_binary() is None:
        raise SystemExit("nginx is not installed (apt-get install nginx-light)")
    if args.smoke:
        args.products, args.seconds, args.cones = 200, 0.5, 40
        args.home = scratch_dir("vo-archive-bench-scale-")
    home = args.home.absolute()
    home.mkdir(parents=True, exist_ok=True)
    try:
        return measure(args, home)
    finally:
        stop_standbys(home)
        stop_embedded(home)
        if args.smoke:
            shutil.rmtree(home, ignore_errors=True)


def has_standbys() -> bool:
    """Return whether this version of the archive reads from hot standbys."""
    return "read_dsns" in {f.name for f in dataclasses.fields(Settings)}


def make_standbys(home: Path, n: int) -> list[str]:
    """Make ``n`` fresh hot standbys of the embedded cluster; return their DSNs."""
    dsns = []
    for k in range(1, n + 1):
        folder = home / f"standby{k}"
        if folder.exists():
            subprocess.run([sys.executable, "-m", "vo_archive", "db", "standby",
                            "stop", str(folder)], env=child_env(
                                VO_ARCHIVE_HOME=str(home)), capture_output=True,
                           check=False, timeout=120)
            shutil.rmtree(folder)
        made = subprocess.run([sys.executable, "-m", "vo_archive", "db", "standby",
                               "add", str(folder)], env=child_env(
                                   VO_ARCHIVE_HOME=str(home)), capture_output=True,
                              text=True, check=True, timeout=600)
        found = re.search(r'read_dsns = \["([^"]+)"\]', made.stdout)
        if found is None:
            raise SystemExit(f"db standby add said no DSN:\n{made.stdout}")
        dsns.append(found[1])
    return dsns


def stop_standbys(home: Path) -> None:
    """Stop the standbys :func:`make_standbys` made under ``home``."""
    for folder in sorted(home.glob("standby[0-9]")):
        subprocess.run([sys.executable, "-m", "vo_archive", "db", "standby", "stop",
                        str(folder)], env=child_env(VO_ARCHIVE_HOME=str(home)),
                       capture_output=True, check=False, timeout=120)


def transactions(dsn: str) -> int:
    """Return how many transactions a server has counted (its own statistics)."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT sum(xact_commit + xact_rollback) FROM "
                        "pg_stat_database")
            row = cur.fetchone()
    finally:
        conn.close()
    return int(row[0]) if row and row[0] is not None else 0


def measure(args: argparse.Namespace, home: Path) -> int:
    """Start the nodes and proxies under ``home``, run every cell, print them."""
    settings = prepare_archive(home, args.products)
    pos = positions(settings)
    rounds: list[list[str]] = [[]]
    dsns: list[str] = []
    if has_standbys():
        dsns = make_standbys(home, 2)
        rounds = [[], dsns[:1], dsns]
    before = [transactions(dsn) for dsn in dsns]
    print(f"{len(pos)} cone positions; {args.workers} gunicorn workers per node; "
          f"{args.seconds:g} s per cell", flush=True)
    errors = 0
    # the one-host figure: one node reading from the primary alone
    base = start_serve(home, args.workers, "--job-workers", "0",
                       log=home / "bench-scale-base.log")
    try:
        for dsns in rounds:
            errors += measure_round(args, home, pos, dsns, base[1])
    finally:
        stop_serve(base[0])
    if has_standbys():
        seen = [transactions(dsn) - b for dsn, b in zip(dsns, before, strict=True)]
        print("standbys: 0, 1 and 2 hot standbys of the embedded cluster (vo-archive "
              "db standby add), read_dsns given to both web nodes; transactions "
              f"on each standby meanwhile: {', '.join(map(str, seen))}", flush=True)
    else:
        print("standbys: not configured (this version of the archive has no "
              "read_dsns)", flush=True)
    if errors:
        print(f"{errors} requests failed", file=sys.stderr)
    return 1 if errors else 0


def measure_round(args: argparse.Namespace, home: Path, pos: list[tuple[float, float]],
                  dsns: list[str], base_port: int) -> int:
    """Measure every cell with web nodes reading from ``dsns``; return the errors."""
    servers = []
    proxies: list[Nginx] = []
    errors = 0
    standbys = len(dsns)
    env = {"VO_ARCHIVE_TRUSTED_PROXIES": "1"}
    if dsns:
        env["VO_ARCHIVE_READ_DSNS"] = " ".join(dsns)
    try:
        for k in (1, 2):
            servers.append(start_serve(
                home, args.workers, "--job-workers", "0",
                log=home / f"bench-scale-node{k}-standbys{standbys}.log", **env))
        nodes = [f"127.0.0.1:{port}" for _, port in servers]
        proxies = [start_nginx(nodes[:1]), start_nginx(nodes)]
        port_of = {"direct": servers[0][1],
                   "nginx1": int(proxies[0].url.rsplit(":", 1)[1]),
                   "nginx2": int(proxies[1].url.rsplit(":", 1)[1])}
        setups = [("1", "direct", "direct"), ("1", "nginx", "nginx1"),
                  ("2", "nginx", "nginx2")]
        for port in [base_port, *port_of.values()]:  # warm every worker's connections
            throughput(port, "SCS", 4, min(1.0, args.seconds), pos)
            throughput(port, "TAP", 4, min(1.0, args.seconds), pos)
        for kind in KINDS:
            for clients in CLIENTS:
                for n_nodes, path, key in setups:
                    rate, med, p95, bad = throughput(port_of[key], kind, clients,
                                                     args.seconds, pos)
                    errors += bad
                    print(f"throughput {kind} clients={clients} nodes={n_nodes} "
                          f"{path} standbys={standbys}: {rate:.0f} req/s, median "
                          f"{med:.2f} ms, p95 {p95:.2f} ms, errors {bad}", flush=True)
        # interleaved cone by cone: the one-host node, then each proxy
        med, bad = latencies([base_port, port_of["nginx1"], port_of["nginx2"]],
                             args.cones, pos)
        errors += bad
        print(f"cone latency, one client ({args.cones} cones each): direct "
              f"{med[0]:.2f} ms; nginx to 1 node {med[1]:.2f} ms "
              f"({med[1] - med[0]:+.2f} ms); nginx to 2 nodes {med[2]:.2f} ms "
              f"({med[2] - med[0]:+.2f} ms); standbys={standbys} (target: within "
              "1.5 ms)", flush=True)
    finally:
        for proxy in proxies:
            proxy.stop()
        for proc, _ in servers:
            stop_serve(proc)
    return errors


if __name__ == "__main__":
    sys.exit(main())
