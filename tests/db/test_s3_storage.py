"""Archived files in a real S3 store (SeaweedFS on loopback): ingest, check, crashes.

Ingest into the store keeps its crash safety: an ingest killed with SIGKILL at
random moments and at each step of the commit protocol leaves, after the next
ingest or ``vo-archive db check``, every version row with its object (right
size and SHA-256), no object without its row, no temporary object and no
journal entry. ``db check`` removes stray objects and reports rows whose object
is gone.
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
from tests.s3server import SeaweedS3
from vo_archive.db.cluster import free_port
from vo_archive.ingest.pipeline import Ingestor, Outcome
from vo_archive.ingest.recovery import SESSION_LOCK_CLASS, check
from vo_archive.ingest.s3 import S3Storage
from vo_archive.ingest.storage import open_storage


def _env(archive: Archive, s3: SeaweedS3, **extra: str) -> dict[str, str]:
    cfg = archive.settings.home / "archive.toml"
    cfg.write_text("[archive]\ningest_batch = 10\n")
    bucket = archive.settings.storage.bucket or ""
    return dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
                VO_ARCHIVE_DSN=archive.settings.dsn or "",
                VO_ARCHIVE_CONFIG=str(cfg), **s3.archive_env(bucket), **extra)


def _ingest_cmd(src: Path) -> list[str]:
    return [sys.executable, "-m", "vo_archive", "ingest", str(src), "--quiet",
            "--workers", "2"]


def _source(archive: Archive, files: list[Path], n: int) -> Path:
    src = archive.settings.home / "src"
    src.mkdir(exist_ok=True)
    for f in files[:n]:
        (src / f.name).write_bytes(f.read_bytes())
    return src


def _assert_consistent(archive: Archive, s3: SeaweedS3) -> int:
    """Every row has its object (size, SHA-256); no other object; no journal."""
    bucket = archive.settings.storage.bucket or ""
    client = s3.client()
    with archive.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT DISTINCT storage_key, sha256, file_size FROM archive.version")
        ).all()
        journal = conn.execute(text(
            "SELECT count(*) FROM archive.ingest_journal")).scalar()
        half = conn.execute(text(
            "SELECT count(*) FROM archive.product p WHERE NOT EXISTS ("
            "SELECT 1 FROM archive.version v WHERE v.product_id = p.product_id "
            "AND v.is_current)")).scalar()
    for key, sha, size in rows:
        data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert len(data) == size, key
        assert hashlib.sha256(data).hexdigest() == sha, key
    objects = s3.keys(bucket)
    assert set(objects) == {r[0] for r in rows}, "stray or missing objects"
    assert journal == 0
    assert half == 0
    tmp = open_storage(archive.settings).tmp_root
    assert not tmp.exists() or not any(tmp.iterdir())
    return len(rows)


def _db_check(archive: Archive, s3: SeaweedS3) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vo_archive", "db", "check", "--deep"],
        env=_env(archive, s3), capture_output=True, text=True, timeout=300)


def test_ingest_into_s3(make_s3_archive: Callable[..., Archive], s3_server: SeaweedS3,
                        demo_files: list[Path]) -> None:
    archive = make_s3_archive()
    with Ingestor(archive.settings, archive.engine, workers=2) as ing:
        summary = ing.ingest_paths(demo_files[:30])
    assert summary.count(Outcome.REJECTED) == 0
    n = _assert_consistent(archive, s3_server)
    assert n == 30
    # nothing archived on the local disk: the storage folder is only staging
    local = archive.settings.storage_dir
    assert not [p for p in local.rglob("*") if p.is_file()]
    # objects carry their SHA-256; the keys are the local back end's
    bucket = archive.settings.storage.bucket or ""
    key = next(iter(s3_server.keys(bucket)))
    head = s3_server.client().head_object(Bucket=bucket, Key=key)
    assert key.endswith(head["Metadata"]["sha256"] + ".fits")
    # a second ingest of the same files adds nothing and leaves no temporary key
    with Ingestor(archive.settings, archive.engine, workers=1) as ing:
        ing.ingest_paths(demo_files[:30])
    assert _assert_consistent(archive, s3_server) == 30
    done = _db_check(archive, s3_server)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checked 30 archived files" in done.stdout


def test_check_removes_strays_and_reports_missing(
        make_s3_archive: Callable[..., Archive], s3_server: SeaweedS3,
        demo_files: list[Path]) -> None:
    archive = make_s3_archive()
    archive.ingest(demo_files[:5])
    bucket = archive.settings.storage.bucket or ""
    client = s3_server.client()
    with archive.engine.connect() as conn:
        keys = conn.execute(text(
            "SELECT storage_key, filename FROM archive.version ORDER BY 1")).all()
    # a final object no row names, a dead session's temporary object, and a
    # row whose object is gone
    stray = "ab/cd/" + "ab" * 32 + ".fits"
    client.put_object(Bucket=bucket, Key=stray, Body=b"stray")
    client.put_object(Bucket=bucket, Key="tmp/987654/" + "cd" * 32 + "-x", Body=b"t")
    # not the archive's: another user of the bucket
    client.put_object(Bucket=bucket, Key="notes/readme.txt", Body=b"mine")
    client.delete_object(Bucket=bucket, Key=keys[0][0])
    store = open_storage(archive.settings)
    assert isinstance(store, S3Storage)
    conn = archive.engine.raw_connection()
    try:
        report = check(conn, store, deep=True)
    finally:
        conn.close()
    assert report.missing_files == [f"{keys[0][1]} ({keys[0][0]})"]
    assert stray in report.removed_files
    assert 987654 in report.dead_sessions
    assert set(s3_server.keys(bucket)) == {k for k, _ in keys[1:]} | {
        "notes/readme.txt"}
    # a damaged object (same size, other bytes) is found by --deep
    data = client.get_object(Bucket=bucket, Key=keys[1][0])["Body"].read()
    client.put_object(Bucket=bucket, Key=keys[1][0], Body=bytes(len(data)))
    done = _db_check(archive, s3_server)
    assert done.returncode == 1
    assert f"bad checksum: {keys[1][1]} ({keys[1][0]})" in done.stdout
    assert f"missing: {keys[0][1]} ({keys[0][0]})" in done.stdout


def _in_process_check(archive: Archive) -> None:
    # The killed ingest's backend ends when it sees its client gone; until
    # then its session lock says "alive" and recovery rightly leaves it alone.
    deadline = time.monotonic() + 30
    with archive.engine.connect() as c:
        while c.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = :cls AND database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())"),
                {"cls": SESSION_LOCK_CLASS}).scalar() and \
                time.monotonic() < deadline:
            c.rollback()
            time.sleep(0.05)
    conn = archive.engine.raw_connection()
    try:
        report = check(conn, open_storage(archive.settings), deep=True)
    finally:
        conn.close()
    assert report.ok, report


@pytest.mark.parametrize("point", ["after_journal", "mid_place", "before_commit",
                                   "after_commit"])
def test_sigkill_at_each_commit_step(point: str,
                                     make_s3_archive: Callable[..., Archive],
                                     s3_server: SeaweedS3,
                                     demo_files: list[Path]) -> None:
    archive = make_s3_archive()
    src = _source(archive, demo_files, 15)
    proc = subprocess.run(_ingest_cmd(src),
                          env=_env(archive, s3_server, VO_ARCHIVE_INGEST_FAULT=point),
                          capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with archive.engine.connect() as conn:
        journal = conn.execute(
            text("SELECT count(*) FROM archive.ingest_journal")).scalar()
    bucket = archive.settings.storage.bucket or ""
    if point in ("after_journal", "mid_place", "before_commit"):
        assert journal > 0  # the crash left journaled objects to recover
    if point == "after_journal":
        # the readers' uploads wait under temporary keys
        assert any(k.startswith("tmp/") for k in s3_server.keys(bucket))
    # the next ingest recovers, then completes the work
    with Ingestor(archive.settings, archive.engine, workers=1) as ing:
        ing.ingest_paths([src])
    assert _assert_consistent(archive, s3_server) == 15


def test_sigkill_at_random_moments(make_s3_archive: Callable[..., Archive],
                                   s3_server: SeaweedS3,
                                   demo_files: list[Path]) -> None:
    """Kill while the store fills: at a random count of objects, plus a random delay.

    Watching the bucket (rather than the clock) puts every kill inside the
    ingest's uploads, copies and commits however loaded the machine is.
    """
    archive = make_s3_archive()
    src = _source(archive, demo_files, 30)
    bucket = archive.settings.storage.bucket or ""
    rng = random.Random(20181002)
    for _ in range(4):
        target = rng.randint(1, 30)
        proc = subprocess.Popen(_ingest_cmd(src), env=_env(archive, s3_server),
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while (proc.poll() is None and time.monotonic() < deadline
               and len(s3_server.keys(bucket)) < target):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _in_process_check(archive)
        _assert_consistent(archive, s3_server)
    subprocess.run(_ingest_cmd(src), env=_env(archive, s3_server), check=True,
                   timeout=300)
    assert _assert_consistent(archive, s3_server) == 30


def test_unreachable_store_stops_ingest_with_one_line(
        make_s3_archive: Callable[..., Archive], s3_server: SeaweedS3,
        demo_files: list[Path]) -> None:
    archive = make_s3_archive()
    src = _source(archive, demo_files, 2)
    env = _env(archive, s3_server)
    env["VO_ARCHIVE_S3_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"  # nobody there
    done = subprocess.run(_ingest_cmd(src), env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "ingest stopped after 0 of 2 files" in done.stderr
    assert "s3://" in done.stderr
    check_run = subprocess.run(
        [sys.executable, "-m", "vo_archive", "db", "check"], env=env,
        capture_output=True, text=True, timeout=300)
    assert check_run.returncode == 2
    assert check_run.stderr.startswith("vo-archive: error: cannot write")
    missing = dict(_env(archive, s3_server), VO_ARCHIVE_S3_BUCKET="no-such-bucket")
    done = subprocess.run(_ingest_cmd(src), env=missing, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 3 and "Traceback" not in done.stderr
