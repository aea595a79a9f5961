"""``vo-archive storage migrate --to s3``: verified, resumable, then the switch.

A migration killed part-way resumes, skipping the objects already in the store;
a local file that no longer has its recorded checksum is refused (not
uploaded). After the switch to the S3 back end, ``db check --deep`` finds
everything in place, and the archive serves the same bytes and headers from
the store as from the local disk, Range and conditional requests included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text

from tests.conftest import Archive
from tests.s3server import SeaweedS3
from vo_archive.app import create_app
from vo_archive.config import StorageConfig
from vo_archive.ingest.recovery import check
from vo_archive.ingest.storage import Storage, open_storage

PREFIX = "pessto/"


def _migrate(archive: Archive, s3: SeaweedS3, bucket: str, **extra: str
             ) -> subprocess.CompletedProcess[str]:
    cfg = archive.settings.home / "archive.toml"
    cfg.write_text(f'[storage]\nendpoint_url = "{s3.endpoint}"\n'
                   f'bucket = "{bucket}"\nprefix = "{PREFIX}"\n')
    env = dict(os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
               VO_ARCHIVE_DSN=archive.settings.dsn or "",
               VO_ARCHIVE_CONFIG=str(cfg), **s3.env, **extra)
    return subprocess.run([sys.executable, "-m", "vo_archive", "storage", "migrate",
                           "--to", "s3"], env=env, capture_output=True, text=True,
                          timeout=300)


def _rows(archive: Archive) -> list[tuple[str, str, int]]:
    with archive.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
            "SELECT DISTINCT storage_key, sha256, file_size FROM archive.version "
            "ORDER BY 1"))]


def _tar_members(body: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar if m.isfile()}


def test_migrate_resumes_then_serves_the_same(make_archive: Callable[..., Archive],
                                              s3_server: SeaweedS3,
                                              demo_files: list[Path]) -> None:
    archive = make_archive()
    archive.ingest(demo_files[:20])
    rows = _rows(archive)
    assert len(rows) == 20
    bucket = s3_server.new_bucket()
    killed = _migrate(archive, s3_server, bucket, VO_ARCHIVE_MIGRATE_FAULT="7")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert len(s3_server.keys(bucket, PREFIX)) == 7
    done = _migrate(archive, s3_server, bucket)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20 files: 13 copied" in done.stdout
    assert "7 already there, 0 failed" in done.stdout
    assert 'set backend = "s3"' in done.stdout
    assert "[20/20]" in done.stdout  # progress, file by file
    client = s3_server.client()
    assert set(s3_server.keys(bucket, PREFIX)) == {PREFIX + k for k, _, _ in rows}
    for key, sha, size in rows:
        obj = client.get_object(Bucket=bucket, Key=PREFIX + key)
        data = obj["Body"].read()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha
        assert obj["Metadata"]["sha256"] == sha
    # run again: nothing to copy
    again = _migrate(archive, s3_server, bucket)
    assert "0 copied (0 bytes), 20 already there" in again.stdout
    # the switch: the same archive with backend = "s3"
    on_s3 = dataclasses.replace(archive.settings, storage=StorageConfig(
        "s3", s3_server.endpoint, bucket, PREFIX))
    conn = archive.engine.raw_connection()
    try:
        report = check(conn, open_storage(on_s3), deep=True)
    finally:
        conn.close()
    assert report.ok and report.versions_checked == 20 and not report.removed_files
    with archive.engine.begin() as c:
        c.execute(text("UPDATE archive.product SET release_date = now() - "
                       "interval '1 day'"))
        versions = c.execute(text(
            "SELECT product_id, version_no, file_size FROM archive.version "
            "ORDER BY file_size DESC LIMIT 3")).all()
        run = c.execute(text("SELECT name FROM archive.run ORDER BY run_id "
                             "LIMIT 1")).scalar_one()
    local = create_app(archive.settings).test_client()
    remote = create_app(on_s3).test_client()
    headers = ("ETag", "Content-Length", "Content-Range", "Accept-Ranges",
               "Content-Disposition", "Cache-Control", "Content-MD5",
               "X-Checksum-SHA256", "Repr-Digest", "Digest", "Content-Type")
    statuses = set()
    for pid, vno, size in versions:
        path = f"/products/{pid}/versions/{vno}"
        for h in ({}, {"Range": "bytes=0-99"}, {"Range": f"bytes={size // 3}-"
                                                         f"{size // 3 + 5000}"},
                  {"Range": "bytes=-1000"}, {"Range": f"bytes={size - 1}-"},
                  {"Range": "bytes=0-9,20-29"}, {"Range": f"bytes={size}-"},
                  {"Range": "bytes=10-5"},
                  {"If-None-Match": local.get(path).headers["ETag"]},
                  {"Range": "bytes=0-9", "If-Range": '"not-it"'}):
            a, b = local.get(path, headers=h), remote.get(path, headers=h)
            assert (a.status_code, a.data) == (b.status_code, b.data), h
            statuses.add(b.status_code)
            for name in headers:
                assert a.headers.get(name) == b.headers.get(name), (h, name)
    assert statuses == {200, 206, 304, 416}
    # bundles: the same members, from the store
    a = local.get(f"/runs/{run}/download")
    b = remote.get(f"/runs/{run}/download")
    assert a.status_code == b.status_code == 200
    assert _tar_members(a.data) == _tar_members(b.data)
    a = local.get(f"/runs/{run}/download?format=zip")
    b = remote.get(f"/runs/{run}/download?format=zip")
    assert a.status_code == b.status_code == 200
    with zipfile.ZipFile(io.BytesIO(a.data)) as za, \
            zipfile.ZipFile(io.BytesIO(b.data)) as zb:
        assert {n: za.read(n) for n in za.namelist()} == \
            {n: zb.read(n) for n in zb.namelist()}
    # Phase 3 validation reads every file's headers: the same report
    a = local.get(f"/runs/{run}/phase3?FORMAT=text")
    b = remote.get(f"/runs/{run}/phase3?FORMAT=text")
    assert a.status_code == b.status_code == 200
    assert a.data == b.data
    assert re.search(rb"status: \w+: [1-9]\d* files", b.data), b.data[:300]


def test_migrate_refuses_a_damaged_file(make_archive: Callable[..., Archive],
                                        s3_server: SeaweedS3,
                                        demo_files: list[Path]) -> None:
    archive = make_archive()
    archive.ingest(demo_files[:3])
    rows = _rows(archive)
    damaged = Storage(archive.settings.storage_dir).path_of(rows[1][0])
    damaged.chmod(0o644)
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    bucket = s3_server.new_bucket()
    done = _migrate(archive, s3_server, bucket)
    assert done.returncode == 1
    assert f"{rows[1][0]}: FAILED" in done.stdout
    assert "3 files: 2 copied" in done.stdout and "1 failed" in done.stdout
    assert 'set backend = "s3"' not in done.stdout
    assert set(s3_server.keys(bucket, PREFIX)) == {PREFIX + rows[0][0],
                                                   PREFIX + rows[2][0]}
    status = subprocess.run(
        [sys.executable, "-m", "vo_archive", "storage", "status"], env=dict(
            os.environ, VO_ARCHIVE_HOME=str(archive.settings.home),
            **s3_server.archive_env(bucket, PREFIX)),
        capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert status.stdout == (f"backend: s3\nfiles: s3://{bucket}/{PREFIX} at "
                             f"{s3_server.endpoint}\n")
