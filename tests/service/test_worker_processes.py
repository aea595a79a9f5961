"""``vo-archive worker --processes N``: one supervisor, N forked job workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import Archive, stop_server


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start(archive: Archive, log: Path) -> tuple[subprocess.Popen[bytes], set[int]]:
    env = dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
               VO_ARCHIVE_DSN=archive.settings.dsn or "")
    proc = subprocess.Popen([sys.executable, "-m", "vo_archive", "worker",
                             "--processes", "2"], env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while b"worker running" not in log.read_bytes():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the worker did not start in 60 s"
        time.sleep(0.1)
    return proc, _children(proc.pid)


def _gone(pids: set[int]) -> bool:
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(_alive(pid) for pid in pids)


def test_worker_runs_its_processes_and_stops_them_on_sigterm(
        make_archive: Callable[..., Archive], tmp_path: Path) -> None:
    archive = make_archive()
    log = tmp_path / "worker.log"
    proc, workers = _start(archive, log)
    try:
        assert len(workers) == 2
        with archive.engine.connect() as conn:
            # each registers with the queue (procrastinate's worker table)
            deadline = time.monotonic() + 30
            while conn.exec_driver_sql("SELECT count(*) FROM procrastinate."
                                       "procrastinate_workers").scalar_one() < 2:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
                conn.rollback()
        # SIGTERM to the supervisor only (as `serve` stops its job workers)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
        assert _gone(workers)
    finally:
        stop_server(proc)


def test_worker_processes_do_not_outlive_a_killed_supervisor(
        make_archive: Callable[..., Archive], tmp_path: Path) -> None:
    proc, workers = _start(make_archive(), tmp_path / "worker.log")
    try:
        assert len(workers) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert _gone(workers)
    finally:
        stop_server(proc)
