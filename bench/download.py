"""Benchmark: streamed run downloads against ``tar`` of the same files, and memory.

Builds its own archive (embedded PostgreSQL in a scratch home) with two runs of
large synthetic images (``vo_archive.retrieval.bigdemo``), serves it with one
gunicorn worker, downloads each run with ``curl`` to /dev/null and reports the
throughput next to ``tar cPf - FILES | cat > /dev/null`` (and, for reference,
``tar cPf - FILES > /dev/null``, which GNU tar short-cuts without reading the
files) over the same stored files, plus the worker's peak resident memory
(VmHWM) after each size, in a fresh server per size.

    python bench/download.py [--sizes 100,2000] [--home DIR] [--keep] [--smoke]

The scratch home (made open to the embedded cluster's server user, as the tests
do) is removed at the end unless ``--keep`` or ``--home``; its cluster is
stopped. ``--smoke`` builds runs of 2 and 6 MB of small files, once each: a
check that the script works, not a measurement. Prints one row per size, then
the load averages (1, 5 and 15 minutes) before and after::

    run MB  files  tar|cat MB/s  tar>null MB/s  HTTP tar MB/s  ratio  HTTP zip MB/s
        worker RSS before/peak MB

Figures depend on the machine and its load; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
from sqlalchemy import text

from bench.common import (
    scratch_dir,
    start_serve,
    stop_embedded,
    stop_serve,
    web_workers,
)
from vo_archive.config import load_settings
from vo_archive.db import migrate
from vo_archive.db.engine import get_engine
from vo_archive.ingest.pipeline import Ingestor
from vo_archive.retrieval.bigdemo import generate_large

MB = 1_000_000


def build(home: Path, size_mb: int, seed: int, file_bytes: int) -> str:
    """Generate and ingest a run of ``size_mb`` in files of ``file_bytes``."""
    run = f"bench{size_mb}mb"
    settings = load_settings()
    engine = get_engine(settings)
    migrate.upgrade(engine, settings.publisher_authority)
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT count(*) FROM archive.run WHERE name = :r"),
                              {"r": run}).scalar()
    if exists:
        return run
    src = home / f"src-{run}"
    print(f"generating {size_mb} MB ...", file=sys.stderr)
    generate_large(src, size_mb * MB, file_bytes=file_bytes, seed=seed)
    print("ingesting ...", file=sys.stderr)
    with Ingestor(settings, engine, run_name=run, workers=1) as ing:
        ing.ingest_paths([src])
    shutil.rmtree(src)
    # the bench needs the products public (anonymous downloads)
    with engine.begin() as conn:
        conn.execute(text("UPDATE archive.product SET release_date = now() - "
                          "interval '1 day' WHERE run_id = (SELECT run_id FROM "
                          "archive.run WHERE name = :r)"), {"r": run})
    return run


def stored_files(run: str) -> list[str]:
    settings = load_settings()
    with get_engine(settings).connect() as conn:
        keys = conn.execute(text(
            "SELECT v.storage_key FROM archive.version v JOIN archive.product p "
            "USING (product_id) JOIN archive.run r USING (run_id) WHERE r.name = :r "
            "AND v.is_current ORDER BY v.filename"), {"r": run}).scalars().all()
    return [str(settings.storage_dir / k) for k in keys]


def timed(cmd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True)  # noqa: S602 (bench-only, fixed text)
    return time.perf_counter() - t0


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def serve() -> tuple[subprocess.Popen[bytes], str]:
    """Start ``vo-archive serve`` (one web worker) on ``$VO_ARCHIVE_HOME``'s archive.

    Returns the process and its base URL.
    """
    proc, port = start_serve(Path(os.environ["VO_ARCHIVE_HOME"]), 1)
    return proc, f"http://127.0.0.1:{port}"


def bench(run: str, repeat: int) -> dict[str, float]:
    files = stored_files(run)
    size = sum(os.path.getsize(f) for f in files)
    listing = Path(tempfile.mkstemp(suffix=".lst")[1])
    listing.write_text("\n".join(files) + "\n")
    timed(f"tar cPf - -T {listing} | cat > /dev/null")  # warm the page cache
    tar_pipe = min(timed(f"tar cPf - -T {listing} | cat > /dev/null")
                   for _ in range(repeat))
    tar_null = min(timed(f"tar cPf - -T {listing} > /dev/null") for _ in range(repeat))
    proc, url = serve()
    try:
        workers = web_workers(proc.pid)
        if len(workers) != 1:
            raise RuntimeError(f"expected one gunicorn web worker of {proc.pid}, "
                               f"found {workers}")
        worker = workers[0]
        requests.get(f"{url}/runs/{run}?format=json", timeout=60)  # warm the worker
        rss0 = peak_rss_kb(worker)
        dl = min(timed(f"curl -sf -o /dev/null '{url}/runs/{run}/download'")
                 for _ in range(repeat))
        dl_zip = min(timed(f"curl -sf -o /dev/null '{url}/runs/{run}/download?"
                           "format=zip'") for _ in range(repeat))
        rss1 = peak_rss_kb(worker)
    finally:
        stop_serve(proc)
        listing.unlink()
    return {"files": len(files), "mb": size / MB, "tar_pipe": size / MB / tar_pipe,
            "tar_null": size / MB / tar_null, "http_tar": size / MB / dl,
            "http_zip": size / MB / dl_zip, "rss_before_mb": rss0 / 1024,
            "rss_peak_mb": rss1 / 1024}


def loadavg() -> str:
    """Return the 1, 5 and 15-minute load averages as /proc/loadavg gives them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    """Run the benchmark and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100,2000", help="run sizes in MB")
    ap.add_argument("--home", type=Path, default=None,
                    help="archive home (kept; runs already there are reused)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch home")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds on tiny runs: checks the script, measures "
                    "nothing")
    args = ap.parse_args()
    file_bytes = 16 << 20
    if args.smoke:
        args.sizes, args.repeat, file_bytes = "2,6", 1, 64 << 10
    for tool in ("curl", "tar"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/download.py needs {tool} on the PATH")
    home = args.home.absolute() if args.home else scratch_dir("vo-archive-bench-")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["VO_ARCHIVE_HOME"] = str(home)
    os.environ.pop("VO_ARCHIVE_DSN", None)
    os.environ.pop("VO_ARCHIVE_CONFIG", None)
    print(f"archive home: {home}", file=sys.stderr)
    before = loadavg()
    rows = []
    try:
        for i, mb in enumerate(int(s) for s in args.sizes.split(",")):
            run = build(home, mb, seed=11 + i, file_bytes=file_bytes)
            rows.append(bench(run, args.repeat))
    finally:
        stop_embedded(home)
        if args.home is None and not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print(f"{'run MB':>8} {'files':>6} {'tar|cat MB/s':>13} {'tar>null MB/s':>14} "
          f"{'HTTP tar MB/s':>14} {'ratio':>6} {'HTTP zip MB/s':>14} "
          f"{'worker RSS before/peak MB':>26}")
    for r in rows:
        print(f"{r['mb']:8.0f} {r['files']:6d} {r['tar_pipe']:13.0f} "
              f"{r['tar_null']:14.0f} {r['http_tar']:14.0f} "
              f"{r['http_tar'] / r['tar_pipe']:6.2f} {r['http_zip']:14.0f} "
              f"{r['rss_before_mb']:12.1f} / {r['rss_peak_mb']:.1f}")
    print(f"load average before: {before}; after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
