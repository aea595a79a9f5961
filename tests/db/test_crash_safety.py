"""Crash safety: an ingest killed with SIGKILL at any moment leaves no trace.

After each kill, ``vo-archive db check`` (or the next ingest) must leave every
version row with its file and checksum, no stray file in storage, no journal
entry, and no half-written version. Kills come at random moments and at each
fault-injection point of the commit protocol.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Archive
from vo_archive.ingest.storage import Storage


def _env(archive: Archive, **extra: str) -> dict[str, str]:
    cfg = archive.settings.home / "archive.toml"
    cfg.write_text("[archive]\ningest_batch = 15\n")
    return dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
                VO_ARCHIVE_DSN=archive.settings.dsn or "",
                VO_ARCHIVE_CONFIG=str(cfg), **extra)


def _ingest_cmd(src: Path) -> list[str]:
    return [sys.executable, "-m", "vo_archive", "ingest", str(src), "--quiet",
            "--workers", "2"]


def _check(archive: Archive) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vo_archive", "db", "check", "--deep"],
        env=_env(archive),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    storage = Storage(archive.settings.storage_dir)
    with archive.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT storage_key, sha256, file_size FROM archive.version")).all()
        journal = conn.execute(text(
            "SELECT count(*) FROM archive.ingest_journal")).scalar()
        half = conn.execute(text(
            "SELECT count(*) FROM archive.product p WHERE NOT EXISTS ("
            "SELECT 1 FROM archive.version v WHERE v.product_id = p.product_id "
            "AND v.is_current)")).scalar()
    for key, sha, size in rows:
        data = storage.path_of(key).read_bytes()
        assert len(data) == size
        assert hashlib.sha256(data).hexdigest() == sha
    assert set(storage.iter_keys()) == {r[0] for r in rows}
    assert journal == 0
    assert half == 0
    tmp = storage.tmp_root
    assert not tmp.exists() or not any(tmp.iterdir())


def _final_state(archive: Archive) -> tuple[int, int]:
    with archive.engine.connect() as conn:
        return conn.execute(text(
            "SELECT count(*), count(DISTINCT sha256) FROM archive.version")).one()


@pytest.mark.slow
def test_sigkill_at_random_moments(make_archive: Callable[..., Archive],
                                   demo_files: list[Path]) -> None:
    archive = make_archive()
    src = demo_files[0].parent
    t0 = time.monotonic()
    reference = make_archive()
    subprocess.run(_ingest_cmd(src), env=_env(reference), check=True, timeout=300)
    duration = time.monotonic() - t0
    rng = random.Random(20180327)
    for _ in range(6):
        proc = subprocess.Popen(_ingest_cmd(src), env=_env(archive),
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, duration))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _check(archive)
    # finishing the ingest gives exactly what an uninterrupted ingest gives
    subprocess.run(_ingest_cmd(src), env=_env(archive), check=True, timeout=300)
    _check(archive)
    assert _final_state(archive) == _final_state(reference)


@pytest.mark.parametrize("point", ["after_journal", "mid_place", "before_commit",
                                   "after_commit"])
def test_sigkill_at_each_commit_step(point: str, make_archive: Callable[..., Archive],
                                     demo_files: list[Path]) -> None:
    archive = make_archive()
    src = archive.settings.home / "src"
    src.mkdir()
    for f in demo_files[:40]:
        (src / f.name).write_bytes(f.read_bytes())
    proc = subprocess.run(
        _ingest_cmd(src),
        env=_env(archive, VO_ARCHIVE_INGEST_FAULT=point),
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL
    with archive.engine.connect() as conn:
        journal = conn.execute(
            text("SELECT count(*) FROM archive.ingest_journal")
        ).scalar()
    if point in ("after_journal", "mid_place", "before_commit"):
        assert journal > 0  # the crash left journaled files to recover
    # the next ingest recovers, then completes the work
    done = subprocess.run(_ingest_cmd(src), env=_env(archive), capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    _check(archive)
    assert _final_state(archive)[0] == len(list(src.iterdir()))
