"""Cross-match benchmark (issue 19): the archive's targets against the Marshall.

Starts a throw-away embedded cluster, migrates an archive database, fills the
Marshall's backup in it with ``--transients`` transients (names in the forms
surveys write them, positions over the whole sky, poles included) and the
archive with ``--targets`` targets: a quarter named as a transient but spelt
differently (``SN 2015abc`` / ``AT2015abc``), a quarter placed within 2″ of one
under another name, a few between two transients, the rest on empty sky. Then
times ``vo-archive marshall match``'s work (rebuilding the index from the
Marshall and matching every target) with the Marshall in the same database and
in another one (``[marshall] dsn``), and the refresh trigger on new transients.

Prints::

    full match, Marshall in the archive's database: N transients against M
        targets in T s (matched A, unmatched B, ambiguous C)
    full match, Marshall in another database: N transients against M targets in
        T s (matched A, unmatched B, ambiguous C)
    refresh: K new transients matched as they arrive in T s (X ms each)

Usage: ``python bench/marshall.py [--transients 100000] [--targets 20000]
[--smoke]``; ``--smoke`` (2,000 transients, 400 targets) checks the script and
measures nothing.  Target: the full match under 10 s.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import sys
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import scratch_dir  # noqa: E402
from vo_archive.config import Settings  # noqa: E402
from vo_archive.db import migrate  # noqa: E402
from vo_archive.db.cluster import EmbeddedCluster  # noqa: E402
from vo_archive.db.engine import get_engine  # noqa: E402
from vo_archive.marshall.match import match_all  # noqa: E402

MARSHALL_SQL = (ROOT / "schema" / "marshall" / "001_marshall.sql").read_text()
SURVEYS = ("ATLAS", "Gaia", "PS1-", "ASASSN-", "ZTF", "DES", "LSQ", "iPTF")


def letters(i: int, n: int) -> str:
    """Return the ``i``-th lower-case designation of ``n`` letters."""
    out = ""
    for _ in range(n):
        i, r = divmod(i, 26)
        out += chr(97 + r)
    return out


def sky(rng: random.Random) -> tuple[float, float]:
    """Return a position uniform on the sphere (RA in [0, 360))."""
    return rng.uniform(0, 360) % 360, math.degrees(math.asin(rng.uniform(-1, 1)))


def offset(ra: float, dec: float, arcsec: float, rng: random.Random
           ) -> tuple[float, float]:
    """Return a position ``arcsec`` away from (ra, dec) in a random direction."""
    d = math.radians(arcsec / 3600)
    a = rng.uniform(0, 2 * math.pi)
    r0, d0 = math.radians(ra), math.radians(dec)
    d1 = math.asin(math.sin(d0) * math.cos(d)
                   + math.cos(d0) * math.sin(d) * math.cos(a))
    r1 = r0 + math.atan2(math.sin(a) * math.sin(d) * math.cos(d0),
                         math.cos(d) - math.sin(d0) * math.sin(d1))
    return math.degrees(r1) % 360, math.degrees(d1)


def make_marshall(n: int, rng: random.Random) -> list[tuple[int, str, float, float]]:
    """Return ``n`` transients: IAU names for half, survey designations else."""
    out = []
    for i in range(n):
        ra, dec = sky(rng)
        if i % 2 == 0:
            name = f"SN 20{10 + i % 15}{letters(i // 2, 4)}"
        else:
            name = f"{SURVEYS[i % len(SURVEYS)]}{10 + i % 15}{letters(i, 5)}"
        out.append((i + 1, name, ra, dec))
    return out


def make_targets(transients: list[tuple[int, str, float, float]], m: int,
                 rng: random.Random) -> list[tuple[str, float, float]]:
    """Return ``m`` targets: by name, by position, ambiguous and on empty sky."""
    out = []
    picks = rng.sample(transients, m)
    for j, (_, name, ra, dec) in enumerate(picks):
        kind = j % 4
        if kind == 0 and name.startswith("SN "):      # another spelling, far off
            out.append(("AT" + name[3:], *sky(rng)))
        elif kind == 0:
            out.append((name.replace("-", "").upper(), *offset(ra, dec, 30, rng)))
        elif kind == 1:                                 # by position only
            out.append((f"PESSTO field {j}", *offset(ra, dec, 2.0, rng)))
        elif kind == 2 and j % 40 == 2:                 # between two transients
            out.append((f"PESSTO pair {j}", ra, dec))
        else:
            out.append((f"NGC {100000 + j}", *sky(rng)))
    return out


def execute_many(dsn: str, statement: str, rows: list[tuple[object, ...]]) -> None:
    """Insert rows in one transaction."""
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        psycopg2.extras.execute_values(cur, statement, rows, page_size=5000)
    conn.close()


def timed_match(dsn: str, marshall_dsn: str | None) -> tuple[float, str]:
    """Run the full match; return seconds and the counts."""
    conn = psycopg2.connect(dsn)
    try:
        t0 = time.perf_counter()
        report = match_all(conn, marshall_dsn)
        dt = time.perf_counter() - t0
    finally:
        conn.close()
    return dt, (f"matched {report.matched}, unmatched {report.unmatched}, "
                f"ambiguous {report.ambiguous}")


def main() -> int:
    """Run the benchmark."""
    import psycopg2.extras

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transients", type=int, default=100_000)
    ap.add_argument("--targets", type=int, default=20_000)
    ap.add_argument("--refresh", type=int, default=1000,
                    help="new transients for the refresh figure")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.transients, args.targets, args.refresh = 2000, 400, 50
    rng = random.Random(19)
    top = scratch_dir("bench-marshall-")
    cluster = EmbeddedCluster(top / "pgdata")
    try:
        cluster.init()
        admin = psycopg2.connect(cluster.dsn("postgres"))
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("CREATE DATABASE bench_archive")
            cur.execute("CREATE DATABASE bench_marshall")
        admin.close()
        dsn, other = cluster.dsn("bench_archive"), cluster.dsn("bench_marshall")
        engine = get_engine(Settings(home=top, dsn=dsn))
        migrate.upgrade(engine)
        engine.dispose()
        conn = psycopg2.connect(other)
        with conn, conn.cursor() as cur:
            cur.execute(MARSHALL_SQL.replace("%", "%%"))
        conn.close()
        transients = make_marshall(args.transients, rng)
        insert_t = ("INSERT INTO marshall.transients (transient_id, name, ra_deg, "
                    "dec_deg) VALUES %s")
        execute_many(dsn, insert_t, list(transients))
        execute_many(other, insert_t, list(transients))
        targets = make_targets(transients, args.targets, rng)
        execute_many(dsn, "INSERT INTO archive.target (name, ra, dec) VALUES %s",
                     list(targets))
        # pairs: a second transient 2.5″ from each "pair" target
        pairs = [(args.transients + 1 + k, f"ZTF99{letters(k, 7)}",
                  *offset(ra, dec, 2.5, rng))
                 for k, (name, ra, dec) in enumerate(targets)
                 if name.startswith("PESSTO pair")]
        execute_many(dsn, insert_t, list(pairs))
        execute_many(other, insert_t, list(pairs))
        for label, source in (("in the archive's database", None),
                              ("in another database", other)):
            dt, counts = timed_match(dsn, source)
            print(f"full match, Marshall {label}: {len(transients) + len(pairs)} "
                  f"transients against {len(targets)} targets in {dt:.2f} s "
                  f"({counts})", flush=True)
        # the refresh: new transients one per transaction, each on a target
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        news = rng.sample(targets, args.refresh)
        with conn.cursor() as cur:
            cur.execute("SELECT setval('marshall.transients_transient_id_seq', "
                        "max(transient_id)) FROM marshall.transients")
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            for k, (_, ra, dec) in enumerate(news):
                cur.execute("INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
                            "VALUES (%s, %s, %s)",
                            (f"Gaia98{letters(k, 6)}", *offset(ra, dec, 1.0, rng)))
        dt = time.perf_counter() - t0
        conn.close()
        print(f"refresh: {args.refresh} new transients matched as they arrive in "
              f"{dt:.2f} s ({1000 * dt / args.refresh:.2f} ms each)", flush=True)
    finally:
        cluster.stop("immediate")
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
