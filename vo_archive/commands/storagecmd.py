"""``vo-archive storage``: where the archived files are, and moving them to S3."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vo_archive.cli import CommandError, add_command
from vo_archive.config import Settings, StorageConfig
from vo_archive.db.engine import get_engine


def register(sub: Any) -> None:
    """Add ``storage migrate`` and ``storage status``."""
    p = sub.add_parser("storage", help="the archived files' storage (local or S3)")
    ss = p.add_subparsers(dest="storage_command", metavar="SUBCOMMAND", required=True)
    m = add_command(ss, "migrate", cmd_migrate,
                    "copy the archive's files from local storage to the object "
                    "store of [storage] (verified, resumable)")
    m.add_argument("--to", choices=["s3"], required=True,
                   help="the back end to copy to")
    m.add_argument("--create-bucket", action="store_true",
                   help="create the bucket when it does not exist")
    m.add_argument("--quiet", action="store_true", help="print only the summary")
    add_command(ss, "status", cmd_status, "say where the archived files are kept")


def _s3_target(settings: Settings) -> StorageConfig:
    cfg = settings.storage
    if not cfg.bucket:
        raise CommandError("no S3 store configured: set bucket (and endpoint_url, "
                           "prefix) in the [storage] table of archive.toml or "
                           "VO_ARCHIVE_S3_BUCKET")
    return cfg


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Copy every archived file to the configured S3 store; say how to switch."""
    from botocore.exceptions import BotoCoreError, ClientError

    from vo_archive.ingest.s3 import S3Storage
    from vo_archive.ingest.s3copy import archived_files, copy_to_store
    from vo_archive.ingest.storage import Storage, StorageFull

    cfg = _s3_target(settings)
    source = Storage(settings.storage_dir)
    target = S3Storage(settings.storage_dir, cfg)
    try:
        try:
            target.client.head_bucket(Bucket=target.bucket)
        except ClientError:
            if not args.create_bucket:
                raise
            target.client.create_bucket(Bucket=target.bucket)
        conn = get_engine(settings).raw_connection()
        try:
            files = archived_files(conn)
        finally:
            conn.close()
        total = sum(size for _, size, _, _ in files)
        print(f"copying {len(files)} files ({total} bytes) from {source.describe()} "
              f"to {target.describe()}", flush=True)

        def progress(n: int, of: int, key: str, what: str) -> None:
            if not args.quiet or what.startswith("FAILED"):
                print(f"[{n}/{of}] {key}: {what}", flush=True)

        report = copy_to_store(files, source, target, progress)
    except (BotoCoreError, ClientError, StorageFull) as exc:
        raise CommandError(f"{target.describe()}: {exc}") from exc
    print(f"{report.files} files: {report.copied} copied ({report.bytes_copied} "
          f"bytes), {report.present} already there, {len(report.failed)} failed")
    if not report.ok:
        print("some files were not copied; fix them (vo-archive db check --deep) "
              "and run the migration again", file=sys.stderr)
        return 1
    if cfg.backend != "s3":
        print('every file is in the store: set backend = "s3" in the [storage] '
              "table of archive.toml (or VO_ARCHIVE_STORAGE=s3) and restart the "
              "archive's servers and workers; the local files can then be removed")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print the storage back end and where it keeps the files."""
    from vo_archive.ingest.storage import open_storage

    store = open_storage(settings)
    print(f"backend: {store.backend}")
    print(f"files: {store.describe()}")
    return 0
