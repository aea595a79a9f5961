"""Classification of a whole run by the job workers: spectra per second.

Builds its own archive in a private PostgreSQL cluster and ingests ``--count``
final 1D science spectra made from random templates of the library (random
epoch, z = 0.01-0.3, S/N 20, in the archive's Phase 3 format) with no worker
running: ingest queues each for classification. Then ``vo-archive worker
--processes N`` (``--workers``; one job at a time in each process, each job
taking a batch of queued spectra) classifies the queue, and the script prints:

- the classifier's own CPU time per spectrum in one process, for reference;
- spectra per second from the first stored verdict to the last (the workers'
  throughput), and from the workers' start (with their start-up: loading the
  template library);
- the CPU time per spectrum of the whole path: the worker processes' (with and
  without their start-up) and PostgreSQL's (the backends serving them), and the
  rate the machine's cores give at that cost (the figure that does not depend
  on other work sharing the cores);
- the load average before and while measuring (the machine may be shared);
- the share whose stored type is the template's own type, and the median
  |Δz|, as a check that the verdicts are the right ones.

Usage: ``python bench/classify_workers.py [--count 400] [--workers 2]``.
Target (issue 14): at least 20 spectra/s on the 2-core reference machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import stop_serve
from classify.core import ClassifyOptions, classify_spectrum
from classify.spectrum import read_spectrum
from classify.synth import template_spectrum
from classify.templates import load_library
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.cluster import EmbeddedCluster
from vo_archive.db.engine import get_engine
from vo_archive.demo import generate
from vo_archive.ingest.pipeline import Ingestor


def make_spectra(out: Path, count: int, seed: int) -> dict[str, tuple[str, float]]:
    """Write ``count`` Phase 3 spectra from templates; return name -> (type, z)."""
    demo = generate(out / "demo", 60, seed=2012)
    src = next(p for p in demo if p.name.endswith("_sb.fits"))
    obj = src.name.split("_", 1)[0]
    lib = load_library()
    rng = np.random.default_rng(seed)
    truth = {}
    for i in range(count):
        index = int(rng.integers(len(lib)))
        z = float(rng.uniform(0.01, 0.3))
        spec = template_spectrum(lib, index, z, snr=20, seed=i, wmin=3700.0,
                                 wmax=9200.0)
        name = src.name.replace(obj, f"BENCH{i:05d}", 1)
        with fits.open(src) as hdul:
            tab = hdul[1]
            unit = tab.columns["FLUX"].unit
            n = len(spec.wave)
            err = spec.error if spec.error is not None else spec.flux * 0.05
            cols = [fits.Column("WAVE", f"{n}E", unit="angstrom",
                                array=[spec.wave.astype(np.float32)]),
                    fits.Column("FLUX", f"{n}E", unit=unit,
                                array=[(spec.flux * 1e-16).astype(np.float32)]),
                    fits.Column("ERR", f"{n}E", unit=unit,
                                array=[(err * 1e-16).astype(np.float32)])]
            new = fits.BinTableHDU.from_columns(cols, header=tab.header)
            new.header["NELEM"] = n
            prim = hdul[0].copy()
            prim.header["OBJECT"] = f"BENCH{i:05d}"
            fits.HDUList([prim, new]).writeto(out / name, checksum=True)
        truth[name] = (str(lib.type[index]), z)
    return truth


def start_worker(env: dict[str, str], log: Path, processes: int
                 ) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "vo_archive", "worker",
                             "--processes", str(processes), "--concurrency", "1"],
                            env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=Path(__file__).parents[1])


def cpu_times(pids: set[int] | None = None, parent: int | None = None
              ) -> dict[int, float]:
    """Return the CPU seconds (user + system) of some processes or of a parent's."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if (pids is not None and pid in pids) or (parent is not None and
                                                  ppid == parent):
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def worker_cpu(proc: subprocess.Popen[bytes]) -> float:
    """Return the CPU seconds of a worker and of its worker processes so far."""
    own = cpu_times({proc.pid})
    return sum(own.values()) + sum(cpu_times(parent=proc.pid).values())


def postgres_cpu(pgdata: Path) -> dict[int, float]:
    """Return the CPU seconds of each PostgreSQL backend of a cluster so far."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    return cpu_times(parent=postmaster)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--smoke", action="store_true",
                    help="a few spectra and one worker, to check the script runs")
    args = ap.parse_args()
    if args.smoke:
        args.count, args.workers = 12, 1
    root = Path(tempfile.mkdtemp(prefix="vo-archive-bench-classify-"))
    root.chmod(0o755)
    cluster = EmbeddedCluster(root / "pgdata")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cluster.init()
        settings = Settings(home=root, dsn=cluster.dsn())
        engine = get_engine(settings)
        migrate.upgrade(engine, settings.publisher_authority)
        files = root / "files"
        files.mkdir()
        t0 = time.perf_counter()
        truth = make_spectra(files, args.count, args.seed)
        print(f"made {len(truth)} spectra from templates in "
              f"{time.perf_counter() - t0:.1f} s")
        with Ingestor(settings, engine, workers=1) as ing:
            ing.ingest_paths(sorted(files.glob("BENCH*.fits")))
        with engine.connect() as conn:
            queued = conn.execute(text(
                "SELECT count(*) FROM procrastinate.procrastinate_jobs WHERE "
                "task_name = 'classify.version' AND status = 'todo'")).scalar_one()
        print(f"ingested; {queued} spectra queued for classification")
        env = dict(os.environ, VO_ARCHIVE_HOME=str(root),
                   VO_ARCHIVE_DSN=settings.dsn or "", OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        # the classifier alone, in this process, on one core: the reference
        paths = sorted(files.glob("BENCH*.fits"))[:20]
        lib = load_library()
        spectra = [read_spectrum(p) for p in paths]
        classify_spectrum(spectra[0], ClassifyOptions(), lib)
        c0 = time.process_time()  # CPU time: the same on a shared machine
        for sp in spectra:
            classify_spectrum(sp, ClassifyOptions(), lib)
        alone = (time.process_time() - c0) / len(spectra)
        print(f"the classifier alone: {alone:.3f} s per spectrum in one process "
              f"({1 / alone:.1f} spectra/s on one core)")
        print(f"load average before measuring: {os.getloadavg()}")
        pg0 = postgres_cpu(root / "pgdata")
        started = time.perf_counter()
        log = root / "worker.log"
        procs = [start_worker(env, log, args.workers)]
        startup = None
        done = 0
        while done < queued and time.perf_counter() - started < 3600:
            time.sleep(0.5)
            if startup is None and b"worker running" in log.read_bytes():
                startup = worker_cpu(procs[0])
            with engine.connect() as conn:
                done = conn.execute(text(
                    "SELECT count(*) FROM archive.classification")).scalar_one()
        total = time.perf_counter() - started
        load = os.getloadavg()
        cpu = worker_cpu(procs[0])
        pg1 = postgres_cpu(root / "pgdata")
        pg = sum(t - pg0.get(pid, 0.0) for pid, t in pg1.items())
        with engine.connect() as conn:
            first, last = conn.execute(text(
                "SELECT min(classified_at), max(classified_at) FROM "
                "archive.classification")).one()
            rows = conn.execute(text(
                "SELECT v.filename, c.sn_type, c.redshift, c.good FROM "
                "archive.classification c JOIN archive.version v USING (version_id)"
            )).all()
        span = max((last - first).total_seconds(), 1e-6)
        right = [r for r in rows if r.good and r.sn_type == truth[r.filename][0]]
        dz = [abs(r.redshift - truth[r.filename][1]) for r in right]
        print(f"{done} spectra classified by {args.workers} workers: "
              f"{(done - 1) / span:.1f} spectra/s from the first verdict to the last "
              f"({span:.1f} s); {done / total:.1f} spectra/s with the workers' "
              f"start-up ({total:.1f} s)")
        steady = cpu - (startup or 0.0)
        path = (steady + pg) / done
        print(f"workers' CPU time: {cpu / done:.3f} s per spectrum (start-up "
              f"included), {steady / done:.3f} s without start-up; PostgreSQL "
              f"{pg / done:.3f} s; whole path {path:.3f} s per spectrum: "
              f"{os.cpu_count()} cores would classify "
              f"{(os.cpu_count() or 1) / path:.1f} spectra/s")
        print(f"load average while measuring: {load}")
        print(f"own type for {len(right) / len(rows):.1%} of them "
              f"(no good match: {sum(1 for r in rows if not r.good)}); median |dz| "
              f"{statistics.median(dz) if dz else float('nan'):.4f}")
    finally:
        for p in procs:
            stop_serve(p)
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
