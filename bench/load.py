"""Load test: concurrent clients with a realistic mix of requests, for a fixed time.

Serves an archive of ``--products`` demo products (made once under ``--home``
and reused) with ``vo-archive serve`` on loopback, or uses ``--url`` of an
archive already running, then runs ``--clients`` clients (default 32) for
``--duration`` seconds (default 60), each on its own kept-alive connection,
spread over ``--processes`` client processes so the client's GIL is not the
bottleneck. Each client draws its next request from the mix:

=================  ======  =====================================================
kind               weight  request
=================  ======  =====================================================
cone (SCS)         25      ``/scs?RA=&DEC=&SR=0.2`` around a product position
sia2               15      ``/sia2/query?POS=CIRCLE ra dec 0.2``
ssap               15      ``/ssap?REQUEST=queryData&POS=ra,dec&SIZE=0.2``
tap                15      sync ADQL cone on ``ivoa.obscore``, TOP 50
datalink           15      ``/datalink/links?ID=<publisher DID>``
download           15      ``/products/<id>`` (a whole FITS file)
=================  ======  =====================================================

Kinds whose service the archive does not have (read from ``/openapi.json``) are
left out and named; with none of the VO services, the landing page and run list
stand in. A response counts as an error unless it is 200 with the whole body
(and, for VO answers, no ``QUERY_STATUS`` of ``ERROR``). Prints requests/s,
p50/p99 latency overall and per kind, and the error count (target: 0).

    python bench/load.py [--home DIR] [--products N] [--url URL]
                         [--clients 32] [--duration 60] [--processes 4] [--smoke]

Prints the mix, then::

    requests: N in T s = R requests/s
    latency: p50 X ms, p99 X ms, max X ms
    errors: N

and a table of kind, requests, req/s, p50 ms, p99 ms and errors per kind; the
exit status is 1 if there was any error. ``--smoke`` (200 products in a scratch
home removed afterwards, 4 clients for 3 s) checks the script and measures
nothing.

The figures depend on the machine and its load: say under what load they were
taken. The run always stops by itself after ``--duration`` (+ a drain of at most
``--timeout`` seconds).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import random
import shutil
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from bench.common import (
    prepare_archive,
    scratch_dir,
    start_serve,
    stop_embedded,
    stop_serve,
)
from vo_archive.config import Settings
from vo_archive.db.engine import get_engine

MIX = {"cone": 25, "sia2": 15, "ssap": 15, "tap": 15, "datalink": 15, "download": 15}
NEEDS = {"cone": "/scs", "sia2": "/sia2/query", "ssap": "/ssap", "tap": "/tap/sync",
         "datalink": "/datalink/links", "download": "/products/{product_id}"}
FALLBACK = {"landing": 50, "runs": 50}


@dataclass(frozen=True)
class Sample:
    """Public products to ask about: (id, ra, dec, publisher DID)."""

    products: list[tuple[int, float, float, str]]


def sample_products(settings: Settings) -> Sample:
    """Return public products with positions, straight from the database."""
    with get_engine(settings).connect() as conn:
        rows = conn.execute(text(
            "SELECT product_id, ra, dec, publisher_did FROM pessto.products "
            "WHERE release_date <= now() AND ra IS NOT NULL "
            "ORDER BY product_id LIMIT 2000")).all()
    if not rows:
        raise SystemExit("the archive has no public product with a position")
    return Sample([(int(r[0]), float(r[1]), float(r[2]), str(r[3])) for r in rows])


def request_for(kind: str, s: Sample, rng: random.Random
                ) -> tuple[str, str, bytes | None]:
    """Return (method, path with query, body) of one request of ``kind``."""
    pid, ra, dec, did = s.products[rng.randrange(len(s.products))]
    ra = (ra + rng.uniform(-0.05, 0.05)) % 360.0
    dec = max(-90.0, min(90.0, dec + rng.uniform(-0.05, 0.05)))
    q = urllib.parse.urlencode
    if kind == "cone":
        return "GET", "/scs?" + q({"RA": f"{ra:.5f}", "DEC": f"{dec:.5f}",
                                   "SR": "0.2"}), None
    if kind == "sia2":
        pos = f"CIRCLE {ra:.5f} {dec:.5f} 0.2"
        return "GET", "/sia2/query?" + q({"POS": pos}), None
    if kind == "ssap":
        return "GET", "/ssap?" + q({"REQUEST": "queryData",
                                    "POS": f"{ra:.5f},{dec:.5f}", "SIZE": "0.2"}), None
    if kind == "tap":
        # ADQL text for the service, with numbers only
        adql = ("SELECT TOP 50 obs_publisher_did, s_ra, s_dec, access_url FROM "  # noqa: S608
                "ivoa.obscore WHERE CONTAINS(POINT('ICRS', s_ra, s_dec), "
                f"CIRCLE('ICRS', {ra:.5f}, {dec:.5f}, 0.5)) = 1")
        return "POST", "/tap/sync", q({"REQUEST": "doQuery", "LANG": "ADQL",
                                       "QUERY": adql}).encode()
    if kind == "datalink":
        return "GET", "/datalink/links?" + q({"ID": did}), None
    if kind == "download":
        return "GET", f"/products/{pid}", None
    if kind == "runs":
        return "GET", "/runs?format=json", None
    return "GET", "/", None


def client(url: str, kinds: dict[str, int], sample: Sample, until: float, seed: int,
           timeout: float, out: list[tuple[str, float, bool, str]]) -> None:
    """Send requests until ``until``; append (kind, seconds, ok, note) to ``out``."""
    rng = random.Random(seed)
    u = urllib.parse.urlsplit(url)
    names, weights = list(kinds), list(kinds.values())
    conn: http.client.HTTPConnection | None = None
    while time.monotonic() < until:
        kind = rng.choices(names, weights)[0]
        method, path, body = request_for(kind, sample, rng)
        headers = {"Accept-Encoding": "identity"}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        t0 = time.monotonic()
        ok, note = False, ""
        try:
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            length = resp.getheader("Content-Length")
            ok = resp.status == 200 and (length is None or int(length) == len(data))
            if ok and kind not in ("download", "landing", "runs"):
                ok = b'name="QUERY_STATUS" value="ERROR"' not in data[:20000]
            note = "" if ok else f"{resp.status} {data[:120]!r}"
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as exc:
            note = f"{type(exc).__name__}: {exc}"
            if conn is not None:
                conn.close()
            conn = None
        out.append((kind, time.monotonic() - t0, ok, note))
    if conn is not None:
        conn.close()


def process_main(url: str, kinds: dict[str, int], sample: Sample, until: float,
                 threads: int, seed: int, timeout: float,
                 queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Run ``threads`` clients in this process and put their results on ``queue``."""
    results: list[tuple[str, float, bool, str]] = []
    workers = [threading.Thread(target=client, args=(url, kinds, sample, until,
                                                     seed * 1000 + i, timeout, results))
               for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(until - time.monotonic() + timeout + 5)
    queue.put(list(results))


def available_kinds(url: str) -> tuple[dict[str, int], list[str]]:
    """Return the mix the archive at ``url`` can serve, and the kinds left out."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("GET", "/openapi.json")
    resp = conn.getresponse()
    paths = set(json.loads(resp.read())["paths"]) if resp.status == 200 else set()
    conn.close()
    kinds = {k: w for k, w in MIX.items() if NEEDS[k] in paths}
    missing = [k for k in MIX if k not in kinds]
    if not set(kinds) - {"download"}:
        kinds.update(FALLBACK)
    return kinds, missing


def pct(values: list[float], q: float) -> float:
    """Return the ``q`` quantile (0..1) of ``values``, in milliseconds."""
    if not values:
        return float("nan")
    s = sorted(values)
    return 1000 * s[min(len(s) - 1, int(q * len(s)))]


def run_load(url: str, sample: Sample, clients: int, duration: float, processes: int,
             timeout: float) -> int:
    """Drive the load and print the figures; return the error count."""
    kinds, missing = available_kinds(url)
    print(f"mix: {', '.join(f'{k} {w}' for k, w in kinds.items())}"
          + (f" (not served, left out: {', '.join(missing)})" if missing else ""))
    print(f"{clients} clients in {processes} processes for {duration:g} s against "
          f"{url}; {len(sample.products)} public products to draw from")
    until = time.monotonic() + duration
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    per = [clients // processes + (1 if i < clients % processes else 0)
           for i in range(processes)]
    procs = [multiprocessing.Process(target=process_main, args=(
        url, kinds, sample, until, n, i + 1, timeout, queue), daemon=True)
        for i, n in enumerate(per) if n]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    results: list[tuple[str, float, bool, str]] = []
    for _ in procs:
        results.extend(queue.get(timeout=duration + timeout + 60))
    for p in procs:
        p.join(10)
    elapsed = time.monotonic() - t0
    errors = [r for r in results if not r[2]]
    lat = [r[1] for r in results]
    print(f"\nrequests: {len(results)} in {elapsed:.1f} s = "
          f"{len(results) / elapsed:.1f} requests/s")
    print(f"latency: p50 {pct(lat, 0.50):.1f} ms, p99 {pct(lat, 0.99):.1f} ms, "
          f"max {pct(lat, 1.0):.1f} ms")
    print(f"errors: {len(errors)}")
    print(f"\n{'kind':<10} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>7}")
    for kind in kinds:
        mine = [r for r in results if r[0] == kind]
        if not mine:
            continue
        print(f"{kind:<10} {len(mine):>9} {len(mine) / elapsed:>8.1f} "
              f"{pct([r[1] for r in mine], 0.5):>8.1f} "
              f"{pct([r[1] for r in mine], 0.99):>8.1f} "
              f"{sum(1 for r in mine if not r[2]):>7}")
    if errors:
        print("\nfirst errors:")
        for kind, _, _, note in errors[:10]:
            print(f"  {kind}: {note}")
    return len(errors)


def main() -> int:
    """Parse arguments, serve (unless ``--url``), load, report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, default=Path("var/bench-load"),
                    help="archive home (made once, reused)")
    ap.add_argument("--products", type=int, default=2000)
    ap.add_argument("--url", help="load an archive already served here instead")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--workers", type=int, default=None,
                    help="server worker processes (default: vo-archive's)")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="per-request timeout, seconds")
    ap.add_argument("--smoke", action="store_true",
                    help="a tiny archive, 4 clients for 3 s: checks the script, "
                    "measures nothing")
    args = ap.parse_args()
    if args.smoke:
        args.products, args.clients, args.duration = 200, 4, 3.0
        args.processes, args.workers = 2, 2
        args.home = scratch_dir("vo-archive-bench-load-")
    home = args.home.absolute()
    home.mkdir(parents=True, exist_ok=True)
    try:
        return serve_and_load(args, home)
    finally:
        if args.smoke:
            stop_embedded(home)
            shutil.rmtree(home, ignore_errors=True)


def serve_and_load(args: argparse.Namespace, home: Path) -> int:
    """Make the archive under ``home``, serve it (unless ``--url``) and load it."""
    settings = prepare_archive(home, args.products)
    sample = sample_products(settings)
    if args.url:
        return 1 if run_load(args.url.rstrip("/"), sample, args.clients, args.duration,
                             args.processes, args.timeout) else 0
    log = home / "bench-load-server.log"
    server, port = start_serve(home, args.workers, log=log)
    try:
        errors = run_load(f"http://127.0.0.1:{port}", sample, args.clients,
                          args.duration, args.processes, args.timeout)
    finally:
        stop_serve(server)  # vo-archive serve stops its job workers with it
        if settings.embedded:
            stop_embedded(home)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
