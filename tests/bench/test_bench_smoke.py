"""Every benchmark script runs in its small mode and prints its figures' lines.

Each ``bench/*.py`` (but ``common.py``) is run once with ``--smoke`` (a few
hundred products, a few seconds) from a scratch folder, as a user would run it,
and must exit 0 and print each of its figure lines in the form its docstring and
the README document. The figures' values are not checked: timing targets stay in
the benchmarks. A new script is picked up by itself and fails here until it has a
``--smoke`` mode and the form of its lines is written in ``FIGURES``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py")
                 if p.name not in ("common.py", "__init__.py"))

#: A figure: a number, or ``nan`` where a column is left out.
N = r"(?:-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|nan)"


def exactly(n: int) -> range:
    """Return the line count of a figure printed ``n`` times."""
    return range(n, n + 1)


def at_least(n: int) -> range:
    """Return the line count of a figure printed ``n`` times or more."""
    return range(n, 1 << 30)


#: For each script, its figure lines (regular expressions matched against whole
#: lines of standard output) and how many lines of each its smoke run prints.
FIGURES: dict[str, list[tuple[str, range]]] = {
    # spectral classification (issue 14): ``FIGURE name value`` lines of its three
    # parts (OzDES spectra, leave-one-out, speed)
    "classify.py": [
        (rf"FIGURE ozdes_\S+ {N}", at_least(1)),
        (rf"FIGURE loo_\S+ {N}", at_least(1)),
        (rf"FIGURE speed_\S+ {N}", at_least(1)),
    ],
    # SODA cutter (issue 16): one line per image size and region, the spectrum, memory
    "cutout.py": [
        (rf"image \d+x\d+, (circle 30\"|circle 2'|polygon 2'x2'|circle 1 deg "
         rf"\(whole\)): {N} ms", exactly(4)),
        (rf"1D spectrum \(\d+ pixels\), BAND: {N} ms", exactly(1)),
        (rf"peak memory: {N} MB", exactly(1)),
    ],
    # classification on arrival by the job workers (issue 14)
    "classify_workers.py": [
        (rf"made \d+ spectra from templates in {N} s", exactly(1)),
        (r"ingested; \d+ spectra queued for classification", exactly(1)),
        (rf"the classifier alone: {N} s per spectrum in one process \({N} spectra/s "
         r"on one core\)", exactly(1)),
        (r"load average before measuring: \(.*\)", exactly(1)),
        (rf"\d+ spectra classified by \d+ workers: {N} spectra/s from the first "
         rf"verdict to the last \({N} s\); {N} spectra/s with the workers' "
         rf"start-up \({N} s\)", exactly(1)),
        (rf"workers' CPU time: {N} s per spectrum \(start-up included\), {N} s "
         rf"without start-up; PostgreSQL {N} s; whole path {N} s per spectrum: \d+ "
         rf"cores would classify {N} spectra/s", exactly(1)),
        (r"load average while measuring: \(.*\)", exactly(1)),
        (rf"own type for {N}% of them \(no good match: \d+\); median \|dz\| {N}",
         exactly(1)),
    ],
    # cone searches behind stalled request bodies (issue 13)
    "stalled.py": [
        (rf"\d+ stalled bodies; \d+ cone searches: median {N} ms, max {N} ms",
         exactly(1)),
        (r"stalled connections after the cones: .+", exactly(1)),
    ],
    "dal.py": [
        (r"service +conn +clients +median ms +p95 ms +req/s", exactly(1)),
        (rf"(SCS|SIA2|SSAP) +(new|keep-alive) +\d+ +{N} +{N} +{N}", exactly(18)),
        (r"radius +rows +HEALPix ms +client ms +\(ranges\) +GiST ms +q3c ms +"
         r"HEALPix/GiST +client/GiST +\(query only\) +q3c/GiST", exactly(1)),
        (r" *(1″|1′|10′|1°)" + rf" +{N}" * 10, exactly(4)),
    ],
    "download.py": [
        (r" +run MB +files +tar\|cat MB/s +tar>null MB/s +HTTP tar MB/s +ratio +"
         r"HTTP zip MB/s +worker RSS before/peak MB", exactly(1)),
        (rf" *{N} +\d+ +{N} +{N} +{N} +{N} +{N} +{N} / {N}", exactly(2)),
        (rf"load average before: {N} {N} {N}; after: {N} {N} {N}", exactly(1)),
    ],
    # downloads from an S3 store next to the local disk (issue 18)
    "storage.py": [
        (rf"migrate: \d+ files, {N} MB in {N} s = {N} MB/s", exactly(1)),
        (r"backend +run MB +files +bundle MB/s +file MB/s +worker RSS before/peak MB",
         exactly(1)),
        (rf"(local|s3) +{N} +\d+ +{N} +{N} +{N} / {N}", exactly(2)),
        (rf"load average before: {N} {N} {N}; after: {N} {N} {N}", exactly(1)),
    ],
    "ingest.py": [
        (rf"(first ingest|identical re-ingest): \d+ files, {N} MB in {N} s = {N} "
         rf"products/s, {N} MB/s \(new \d+, versions \d+, unchanged \d+, rejected "
         r"\d+\)", exactly(2)),
        (rf"  CPU per file: recording {N} ms, readers {N} ms, PostgreSQL {N} ms, "
         rf"total {N} ms \(load average {N}\)", exactly(2)),
    ],
    "load.py": [
        (rf"requests: \d+ in {N} s = {N} requests/s", exactly(1)),
        (rf"latency: p50 {N} ms, p99 {N} ms, max {N} ms", exactly(1)),
        (r"errors: \d+", exactly(1)),
        (r"kind +requests +req/s +p50 ms +p99 ms +errors", exactly(1)),
        # one row per kind drawn (which kinds are drawn in 3 s varies)
        (rf"(cone|sia2|ssap|tap|datalink|download|landing|runs) +\d+ +{N} +{N} +"
         rf"{N} +\d+", at_least(1)),
    ],
    # cross-match with the Marshall (issue 19)
    "marshall.py": [
        (r"full match, Marshall in (the archive's|another) database: \d+ transients "
         rf"against \d+ targets in {N} s \(matched \d+, unmatched \d+, "
         r"ambiguous \d+\)", exactly(2)),
        (rf"refresh: \d+ new transients matched as they arrive in {N} s \({N} ms "
         r"each\)", exactly(1)),
    ],
    "replication.py": [
        (rf"steady \d+ changes/s for {N} s: \d+ rows, lag p50 {N} s, p95 {N} s, "
         rf"max {N} s \(sampled every 50 ms\)", exactly(1)),
        (rf"\d+ changes written on the master in {N} s \({N} rows/s, capture "
         r"trigger included\)", exactly(1)),
        (rf"backlog of \d+ changes cleared in {N} s \({N} changes/s, replicator "
         r"start included\)", exactly(1)),
        (r"verify: identical", exactly(1)),
    ],
    # several web nodes behind nginx (issue 18): 2 kinds x 2 client counts x 3 paths
    "scale.py": [
        (rf"\d+ cone positions; \d+ gunicorn workers per node; {N} s per cell",
         exactly(1)),
        (rf"throughput (SCS|TAP) clients=(16|64) nodes=[12] (direct|nginx) "
         rf"standbys=\d+: {N} req/s, median {N} ms, p95 {N} ms, errors 0",
         at_least(12)),
        (rf"cone latency, one client \(\d+ cones each\): direct {N} ms; nginx to 1 "
         rf"node {N} ms \(\+?{N} ms\); nginx to 2 nodes {N} ms \(\+?{N} ms\); "
         r"standbys=\d+ \(target: within 1\.5 ms\)", at_least(1)),
        (r"standbys: .+", exactly(1)),
    ],
    "tap.py": [
        (rf"\[\d+ rows\] sync cone \(TOP 100, r=0\.5 deg\): median {N} ms, p90 {N} "
         r"ms \(\d+ queries\)", exactly(1)),
        (rf"\[\d+ rows\] full-table aggregate: median {N} ms \(\d+ queries\)",
         exactly(1)),
        (rf"\[\d+ rows\] async small job, creation to COMPLETED: median {N} ms, "
         rf"max {N} ms \(\d+ jobs\)", exactly(1)),
    ],
}

def run_script(script: str, *args: str, cwd: Path, timeout: float
               ) -> subprocess.CompletedProcess[str]:
    """Run ``bench/script`` as a user would; kill its process group on timeout."""
    # as a newcomer runs it: no archive chosen in the environment
    env = {k: v for k, v in os.environ.items()
           if k not in ("VO_ARCHIVE_HOME", "VO_ARCHIVE_DSN", "VO_ARCHIVE_CONFIG")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, str(BENCH / script), *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"bench/{script} {' '.join(args)} did not finish in {timeout:.0f} "
                    f"s:\n{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_every_script_is_listed() -> None:
    """The parametrisation finds the benchmarks (a wrong folder would test none)."""
    assert {"download.py", "ingest.py", "tap.py"} <= set(SCRIPTS)


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke(script: str, tmp_path: Path) -> None:
    """``bench/<script> --smoke`` exits 0 and prints its figures in their form."""
    # read, not run with --help: a script without options would run in full
    assert '"--smoke"' in (BENCH / script).read_text(), (
        f"bench/{script} has no --smoke mode: every benchmark needs one (a few "
        "hundred products, a few seconds) for this test")
    assert script in FIGURES, (
        f"bench/{script}: write the form of its figure lines in FIGURES of "
        f"{Path(__file__).relative_to(ROOT)}")
    done = run_script(script, "--smoke", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, (
        f"bench/{script} --smoke exited {done.returncode}:\n{done.stdout[-3000:]}\n"
        f"{done.stderr[-3000:]}")
    lines = done.stdout.splitlines()
    for pattern, count in FIGURES[script]:
        found = [line for line in lines if re.fullmatch(pattern, line)]
        assert len(found) in count, (
            f"bench/{script}: {len(found)} lines of the form {pattern!r}, expected "
            f"{count.start}{'' if len(count) == 1 else ' or more'}; it printed:\n"
            f"{done.stdout}")
    # the scratch folder it ran in holds nothing it left behind
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())
