"""Benchmark: streamed run downloads against ``tar`` of the same files, and memory.

Builds its own archive (embedded PostgreSQL in a scratch home) with two runs of
large synthetic images (``vo_archive.retrieval.bigdemo``), serves it with one
gunicorn worker, downloads each run with ``curl`` to /dev/null and reports the
throughput next to ``tar cf - FILES | cat > /dev/null`` (and, for reference,
``tar cf - FILES > /dev/null``, which GNU tar short-cuts without reading the
files) over the same stored files, plus the worker's peak resident memory
(VmHWM) after each size, in a fresh server per size.

    python bench/download.py [--sizes 100,2000] [--home DIR] [--keep]

Figures depend on the machine and its load; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
from sqlalchemy import text

from vo_archive.config import load_settings
from vo_archive.db import migrate
from vo_archive.db.cluster import free_port
from vo_archive.db.engine import get_engine
from vo_archive.ingest.pipeline import Ingestor
from vo_archive.retrieval.bigdemo import generate_large

MB = 1_000_000


def build(home: Path, size_mb: int, seed: int) -> str:
    """Generate and ingest a run of ``size_mb``; return its name."""
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
    generate_large(src, size_mb * MB, seed=seed)
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


def workers_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True, check=False).stdout.split()
    return [int(p) for p in out]


def serve() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vo_archive", "serve", "--port",
                             str(port), "--workers", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            requests.get(url + "/runs?format=json", timeout=2)
            return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def bench(run: str, repeat: int) -> dict[str, float]:
    files = stored_files(run)
    size = sum(os.path.getsize(f) for f in files)
    listing = Path(tempfile.mkstemp(suffix=".lst")[1])
    listing.write_text("\n".join(files) + "\n")
    timed(f"tar cf - -T {listing} | cat > /dev/null")  # warm the page cache
    tar_pipe = min(timed(f"tar cf - -T {listing} | cat > /dev/null")
                   for _ in range(repeat))
    tar_null = min(timed(f"tar cf - -T {listing} > /dev/null") for _ in range(repeat))
    proc, url = serve()
    try:
        (worker,) = workers_of(proc.pid)
        requests.get(f"{url}/runs/{run}?format=json", timeout=60)  # warm the worker
        rss0 = peak_rss_kb(worker)
        dl = min(timed(f"curl -sf -o /dev/null '{url}/runs/{run}/download'")
                 for _ in range(repeat))
        dl_zip = min(timed(f"curl -sf -o /dev/null '{url}/runs/{run}/download?"
                           "format=zip'") for _ in range(repeat))
        rss1 = peak_rss_kb(worker)
    finally:
        stop(proc)
        listing.unlink()
    return {"files": len(files), "mb": size / MB, "tar_pipe": size / MB / tar_pipe,
            "tar_null": size / MB / tar_null, "http_tar": size / MB / dl,
            "http_zip": size / MB / dl_zip, "rss_before_mb": rss0 / 1024,
            "rss_peak_mb": rss1 / 1024}


def main() -> int:
    """Run the benchmark and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100,2000", help="run sizes in MB")
    ap.add_argument("--home", default=None, help="scratch archive home (kept)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="vo-archive-bench-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["VO_ARCHIVE_HOME"] = str(home)
    os.environ.pop("VO_ARCHIVE_DSN", None)
    print(f"archive home: {home}; load average {os.getloadavg()[0]:.2f}",
          file=sys.stderr)
    rows = []
    for i, mb in enumerate(int(s) for s in args.sizes.split(",")):
        run = build(home, mb, seed=11 + i)
        rows.append(bench(run, args.repeat))
    print(f"{'run MB':>8} {'files':>6} {'tar|cat MB/s':>13} {'tar>null MB/s':>14} "
          f"{'HTTP tar MB/s':>14} {'ratio':>6} {'HTTP zip MB/s':>14} "
          f"{'worker RSS before/peak MB':>26}")
    for r in rows:
        print(f"{r['mb']:8.0f} {r['files']:6d} {r['tar_pipe']:13.0f} "
              f"{r['tar_null']:14.0f} {r['http_tar']:14.0f} "
              f"{r['http_tar'] / r['tar_pipe']:6.2f} {r['http_zip']:14.0f} "
              f"{r['rss_before_mb']:12.1f} / {r['rss_peak_mb']:.1f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
