"""Replication benchmark (issue 6): lag under load and catch-up of a backlog.

Measures the lag at a steady 500 changes/s, and the catch-up time of a
100,000-change backlog.

Starts two throw-away clusters on loopback, a Marshall stream between them
and the replicator as a subprocess (``python -m replication run``), then:

1. writes 500 single-row transactions per second for ``--seconds`` and
   samples, every 50 ms, which rows the slave has; a row's lag is the time
   from its commit on the master to the first sample that sees it on the
   slave (so it is rounded up to the next 50 ms);
2. stops the replicator, commits 100,000 changes (ten transactions of 10,000
   inserts), starts the replicator again and times until the slave has them
   all (process start-up included).

Prints::

    steady R changes/s for S s: N rows, lag p50 X s, p95 X s, max X s (sampled
        every 50 ms)
    N changes written on the master in T s (R rows/s, capture trigger included)
    backlog of N changes cleared in T s (R changes/s, replicator start included)
    verify: identical

The second line is the master's write rate of the backlog: the capture
trigger's cost.

Usage: ``python bench/replication.py [--seconds 20] [--smoke]``; ``--smoke``
(50 changes/s for 2 s, a backlog of 2,000) checks the script and measures
nothing.  Targets: lag <= 1 s, backlog <= 20 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import scratch_dir  # noqa: E402
from vo_archive.db.cluster import EmbeddedCluster  # noqa: E402

TABLES = ["marshall.transients", "marshall.classifications", "marshall.priorities",
          "marshall.comments", "marshall.atel_refs"]


def _exec(dsn: str, statement: str, params: tuple = ()) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(statement, params)
    conn.close()


def _count(dsn: str) -> int:
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM marshall.comments")
        n = int(cur.fetchone()[0])
    conn.close()
    return n


def steady(master: str, slave: str, seconds: float, rate: int) -> list[float]:
    """Write ``rate`` transactions/s; return each sampled row's lag in seconds."""
    committed: dict[int, float] = {}
    stop = threading.Event()

    def writer() -> None:
        conn = psycopg2.connect(master)
        start = time.monotonic()
        i = 0
        while not stop.is_set():
            i += 1
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with conn.cursor() as cur:
                cur.execute("INSERT INTO marshall.comments (comment_id, transient_id, "
                            "author, body) VALUES (%s, 1, 'bench', 'steady')", (i,))
            conn.commit()
            committed[i] = time.monotonic()
        conn.close()

    t = threading.Thread(target=writer)
    t.start()
    lags: list[float] = []
    conn = psycopg2.connect(slave)
    conn.autocommit = True
    seen = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end or seen < len(committed):
        if time.monotonic() >= end:
            stop.set()
        with conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(comment_id), 0) FROM marshall.comments "
                        "WHERE author = 'bench'")
            top = int(cur.fetchone()[0])
        now = time.monotonic()
        for i in range(seen + 1, top + 1):
            if i in committed:
                lags.append(now - committed[i])
        seen = max(seen, top)
        time.sleep(0.05)
    stop.set()
    t.join()
    conn.close()
    return lags


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true",
                        help="50 changes/s for 2 s, a backlog of 2,000: checks the "
                        "script, measures nothing")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.rate, args.backlog = 2.0, 50, 2_000

    top = scratch_dir("repl-bench-")
    clusters = [EmbeddedCluster(top / n) for n in ("qub", "ia2")]
    proc = None
    try:
        for c in clusters:
            c.init()
        master, slave = (c.dsn() for c in clusters)
        schema = (ROOT / "schema" / "marshall" / "001_marshall.sql").read_text()
        for dsn in (master, slave):
            _exec(dsn, schema.replace("%", "%%"))
        _exec(master, "INSERT INTO marshall.transients (transient_id, name, ra_deg, "
                      "dec_deg) VALUES (1, 'SN bench', 10, 10)")
        config = top / "replication.toml"
        config.write_text(
            "[[stream]]\nname = 'marshall'\norigin = 'qub'\n"
            f"master = '{master}'\nslave = '{slave}'\n"
            f"tables = [{', '.join(repr(t) for t in TABLES)}]\n")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        run = [sys.executable, "-m", "replication", "--config", str(config)]
        subprocess.run([*run, "init"], check=True, env=env, capture_output=True)
        log = open(top / "replicator.log", "ab")
        proc = subprocess.Popen([*run, "run"], env=env, stdout=log, stderr=log)
        while subprocess.run(
                [*run, "verify", "--timeout", "60"], env=env, capture_output=True
        ).returncode != 0:
            if proc.poll() is not None:
                raise SystemExit("the replicator stopped:\n"
                                 + (top / "replicator.log").read_text()[-2000:])
            time.sleep(0.2)

        lags = steady(master, slave, args.seconds, args.rate)
        lags.sort()
        p50 = statistics.median(lags)
        p95 = lags[int(len(lags) * 0.95)]
        print(
            f"steady {args.rate} changes/s for {args.seconds:.0f} s: {len(lags)} rows, "
            f"lag p50 {p50:.3f} s, p95 {p95:.3f} s, max {lags[-1]:.3f} s "
            "(sampled every 50 ms)"
        )

        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        base = _count(master)
        per_tx = min(10_000, args.backlog)
        w0 = time.monotonic()
        for k in range(args.backlog // per_tx):
            _exec(
                master,
                "INSERT INTO marshall.comments (comment_id, transient_id, "
                "author, body) SELECT %s + g, 1, 'backlog', repeat('x', 100) || g "
                "FROM generate_series(1, %s) g",
                (10_000_000 + k * per_tx, per_tx),
            )
        target = base + per_tx * (args.backlog // per_tx)
        wrote = time.monotonic() - w0
        print(f"{target - base} changes written on the master in {wrote:.1f} s "
              f"({(target - base) / wrote:.0f} rows/s, capture trigger included)")
        t0 = time.monotonic()
        proc = subprocess.Popen([*run, "run"], env=env, stdout=log, stderr=log)
        while _count(slave) < target:
            if proc.poll() is not None:
                raise SystemExit("the replicator stopped:\n"
                                 + (top / "replicator.log").read_text()[-2000:])
            time.sleep(0.05)
        took = time.monotonic() - t0
        print(f"backlog of {args.backlog} changes cleared in {took:.1f} s "
              f"({args.backlog / took:.0f} changes/s, replicator start included)")
        ok = subprocess.run([*run, "verify"], env=env, capture_output=True, text=True)
        print("verify:", "identical" if ok.returncode == 0 else ok.stdout)
        return 0 if ok.returncode == 0 else 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        for c in clusters:
            try:
                c.stop("immediate")
            except Exception:  # best-effort cleanup
                pass
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
