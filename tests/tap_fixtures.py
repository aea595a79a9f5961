"""Fixtures for the TAP tests: a job worker beside the live server.

Imported by the TAP test modules (``from tests.tap_fixtures import ...``); the
worker is the real ``vo-archive worker`` process, started here so that CI needs
nothing running beforehand.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Archive, stop_server


def start_worker(archive: Archive) -> subprocess.Popen[bytes]:
    """Start ``vo-archive worker`` for an archive; return once it runs."""
    env = dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
               VO_ARCHIVE_DSN=archive.settings.dsn or "")
    log_path = archive.settings.home / f"worker-{time.monotonic_ns()}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "vo_archive", "worker"], env=env,
                            stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: {log_path.read_text()}")
        if b"worker running" in log_path.read_bytes():
            time.sleep(0.5)  # let it LISTEN before jobs are queued
            return proc
        time.sleep(0.1)
    stop_worker(proc)
    raise RuntimeError("worker did not start in 60 s")


#: A worker runs in its own session like a server: stopped the same way.
stop_worker = stop_server


@pytest.fixture(scope="session")
def tap_worker(demo_archive: Archive) -> Iterator[subprocess.Popen[bytes]]:
    """A job worker for the demo archive, for the whole run."""
    proc = start_worker(demo_archive)
    yield proc
    stop_worker(proc)
