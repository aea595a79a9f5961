"""Copy an archive's files from local storage to an object store, verified, resumable.

``vo-archive storage migrate --to s3`` runs :func:`copy_to_store`: every file a
version names is uploaded to its object key (the same storage key under the
store's prefix) with its SHA-256 recorded as object metadata. Each upload is
checked as :meth:`S3Storage.upload` checks an ingest's: the bytes read must
have the SHA-256 and MD5 the archive recorded before the object is made, the
store checks each piece's MD5, and the object's size and ETag are checked
after. A file already in the store with the right size and SHA-256 is skipped,
so a migration that was stopped (or killed) resumes where it was; uploads it
left unfinished are aborted first.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vo_archive.ingest.s3 import TMP, ChecksumMismatch, S3Storage
from vo_archive.ingest.storage import Storage

log = logging.getLogger(__name__)

#: Test hook: the copy kills itself (SIGKILL) after this many uploads.
FAULT_AFTER = int(os.environ.get("VO_ARCHIVE_MIGRATE_FAULT", "0") or 0)


@dataclass
class CopyReport:
    """What a copy to the store did."""

    files: int = 0
    copied: int = 0
    present: int = 0
    bytes_copied: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every file is now in the store."""
        return not self.failed


#: Progress callback: (files done, files in all, storage key, what happened).
Progress = Callable[[int, int, str, str], None]


def archived_files(raw_conn: Any) -> list[tuple[str, int, str, str]]:
    """Return (storage key, size, SHA-256, MD5) of every archived file, once each."""
    with raw_conn.cursor() as cur:
        cur.execute("SELECT DISTINCT ON (storage_key) storage_key, file_size, sha256, "
                    "md5 FROM archive.version ORDER BY storage_key")
        rows = [(str(k), int(n), str(s), str(m)) for k, n, s, m in cur.fetchall()]
    raw_conn.commit()
    return rows


def copy_to_store(files: list[tuple[str, int, str, str]], source: Storage,
                  target: S3Storage, progress: Progress | None = None) -> CopyReport:
    """Copy files from local storage to the store; skip those already there.

    Parameters
    ----------
    files
        (storage key, size, SHA-256, MD5) of each file, as the archive records.
    source
        The local storage holding the files.
    target
        The object store to copy to (its bucket must exist).
    progress
        Called after each file.
    """
    report = CopyReport(files=len(files))
    # uploads a killed migration left unfinished (not an ingest's, under tmp/)
    try:
        pages = target.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=target.bucket, Prefix=target.prefix)
        stale = [(u["Key"], u["UploadId"]) for page in pages
                 for u in page.get("Uploads", [])
                 if not str(u["Key"]).startswith(target.prefix + TMP)]
    except Exception:  # a store without the listing: nothing to abort
        stale = []
    for key, upload_id in stale:
        target.client.abort_multipart_upload(Bucket=target.bucket, Key=key,
                                             UploadId=upload_id)
    for n, (key, size, sha, md5) in enumerate(files, 1):
        if target.has_copy(key, size, sha):
            report.present += 1
            what = "already there"
        else:
            try:
                target.upload(source.path_of(key), target.object_key(key), sha, md5)
            except (ChecksumMismatch, OSError) as exc:
                report.failed.append(f"{key}: {exc}")
                what = f"FAILED: {exc}"
                log.error("storage migrate: %s: %s", key, exc)
            else:
                report.copied += 1
                report.bytes_copied += size
                what = "copied"
                if FAULT_AFTER and report.copied >= FAULT_AFTER:
                    os.kill(os.getpid(), signal.SIGKILL)
        if progress is not None:
            progress(n, len(files), key, what)
    return report
