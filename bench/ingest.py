"""Ingest throughput: products per second for typical PESSTO files.

Generates a demo data set (seeded; EFOSC2 and SOFI spectra, images, calibrations),
then ingests it into a fresh archive in its own embedded cluster and prints the
rate of the first ingest (headers, checksums, copies, inserts) and of an
identical re-ingest (everything unchanged).

    python bench/ingest.py [--products 5000] [--workers N] [--keep DIR]

Target (issue 2): at least 1000 products/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

# the repository first: bench/tap.py must not shadow the tap package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vo_archive.config import Settings  # noqa: E402
from vo_archive.db import migrate  # noqa: E402
from vo_archive.db.cluster import EmbeddedCluster  # noqa: E402
from vo_archive.db.engine import get_engine  # noqa: E402
from vo_archive.demo import generate  # noqa: E402
from vo_archive.ingest.pipeline import Ingestor, Outcome  # noqa: E402


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--data", type=Path, default=None,
                    help="reuse (or create) the demo files in this folder")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vo-archive-bench-"))
    root.chmod(0o755)
    data = args.data or root / "data"
    try:
        if not data.exists() or len(list(data.glob("*.fits"))) < args.products * 0.9:
            t = time.perf_counter()
            files = generate(data, args.products)
            print(f"generated {len(files)} files in {time.perf_counter() - t:.1f} s")
        files = sorted(data.glob("*.fits"))
        size = sum(f.stat().st_size for f in files)
        cluster = EmbeddedCluster(root / "pgdata")
        cluster.init()
        settings = Settings(home=root / "home", dsn=cluster.dsn(), ingest_batch=args.batch)
        engine = get_engine(settings)
        migrate.upgrade(engine)
        # warm the page cache so the figure measures ingest, not the first disk read
        for f in files:
            f.read_bytes()
        for label in ("first ingest", "identical re-ingest"):
            t = time.perf_counter()
            with Ingestor(settings, engine, workers=args.workers) as ing:
                summary = ing.ingest_paths([data])
            dt = time.perf_counter() - t
            n = len(summary.results)
            print(f"{label}: {n} files, {size / 1e6:.0f} MB in {dt:.2f} s = "
                  f"{n / dt:.0f} products/s, {size / 1e6 / dt:.0f} MB/s "
                  f"(new {summary.count(Outcome.NEW)}, versions "
                  f"{summary.count(Outcome.NEW_VERSION)}, unchanged "
                  f"{summary.count(Outcome.UNCHANGED)}, rejected "
                  f"{summary.count(Outcome.REJECTED)})")
        engine.dispose()
        cluster.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
