"""Ingest throughput: products per second for typical PESSTO files.

Generates a demo data set (seeded; EFOSC2 and SOFI spectra, images, calibrations),
then ingests it into a fresh archive in its own embedded cluster and prints the
rate of the first ingest (headers, checksums, copies, inserts) and of an
identical re-ingest (everything unchanged), with the CPU time per file spent
in the recording process, in the reader processes and in PostgreSQL (wall-clock
rates depend on other load on the machine; CPU times much less).

    python bench/ingest.py [--products 5000] [--workers N] [--data DIR] [--smoke]

Prints, for the first ingest and for the re-ingest::

    first ingest: N files, M MB in T s = R products/s, S MB/s (new N, versions N,
        unchanged N, rejected N)
      CPU per file: recording X ms, readers X ms, PostgreSQL X ms, total X ms
        (load average L)

``--smoke`` ingests 300 products: a check that the script works, not a
measurement.

Target (issue 2): at least 1000 products/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path

# the repository first: bench/tap.py must not shadow the tap package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import scratch_dir
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.cluster import EmbeddedCluster
from vo_archive.db.engine import get_engine
from vo_archive.demo import generate
from vo_archive.ingest.pipeline import Ingestor, Outcome


def _proc_cpu(pid: int, children: bool = False) -> float:
    """Return a process's CPU seconds (user + system), with its reaped children's."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu(pgdata: Path) -> float:
    """Return the CPU seconds used so far by a PostgreSQL server and its backends.

    Backends that have exited are counted in the postmaster's children's time.
    """
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    total = _proc_cpu(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == postmaster:
            total += _proc_cpu(int(entry.name))
    return total


def own_cpu(who: int) -> float:
    """Return CPU seconds of this process (RUSAGE_SELF) or its reaped children."""
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--data", type=Path, default=None,
                    help="reuse (or create) the demo files in this folder")
    ap.add_argument("--smoke", action="store_true",
                    help="300 products: checks the script, measures nothing")
    args = ap.parse_args()
    if args.smoke:
        args.products = 300
    root = scratch_dir("vo-archive-bench-")
    data = args.data or root / "data"
    cluster = EmbeddedCluster(root / "pgdata")
    try:
        if not data.exists() or len(list(data.glob("*.fits"))) < args.products * 0.9:
            t = time.perf_counter()
            files = generate(data, args.products)
            print(f"generated {len(files)} files in {time.perf_counter() - t:.1f} s")
        files = sorted(data.glob("*.fits"))
        size = sum(f.stat().st_size for f in files)
        cluster.init()
        settings = Settings(
            home=root / "home", dsn=cluster.dsn(), ingest_batch=args.batch
        )
        engine = get_engine(settings)
        migrate.upgrade(engine)
        # warm the page cache so the figure measures ingest, not the first disk read
        for f in files:
            f.read_bytes()
        for label in ("first ingest", "identical re-ingest"):
            cpu0 = (own_cpu(resource.RUSAGE_SELF), own_cpu(resource.RUSAGE_CHILDREN),
                    server_cpu(cluster.pgdata))
            t = time.perf_counter()
            with Ingestor(settings, engine, workers=args.workers) as ing:
                summary = ing.ingest_paths([data])
            dt = time.perf_counter() - t
            # the readers have been joined on leaving the Ingestor
            cpu1 = (own_cpu(resource.RUSAGE_SELF), own_cpu(resource.RUSAGE_CHILDREN),
                    server_cpu(cluster.pgdata))
            n = len(summary.results)
            print(f"{label}: {n} files, {size / 1e6:.0f} MB in {dt:.2f} s = "
                  f"{n / dt:.0f} products/s, {size / 1e6 / dt:.0f} MB/s "
                  f"(new {summary.count(Outcome.NEW)}, versions "
                  f"{summary.count(Outcome.NEW_VERSION)}, unchanged "
                  f"{summary.count(Outcome.UNCHANGED)}, rejected "
                  f"{summary.count(Outcome.REJECTED)})")
            ms = [(b - a) * 1e3 / max(n, 1) for a, b in zip(cpu0, cpu1, strict=True)]
            print(f"  CPU per file: recording {ms[0]:.2f} ms, readers {ms[1]:.2f} ms, "
                  f"PostgreSQL {ms[2]:.2f} ms, total {sum(ms):.2f} ms "
                  f"(load average {os.getloadavg()[0]:.2f})")
        engine.dispose()
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
