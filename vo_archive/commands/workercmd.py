"""``vo-archive worker``: run queued asynchronous (UWS) jobs."""

from __future__ import annotations

import argparse
import os
from typing import Any

from vo_archive.cli import add_command
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.engine import get_engine


def register(sub: Any) -> None:
    """Add ``worker``."""
    p = add_command(sub, "worker", cmd_worker,
                    "run queued asynchronous jobs (TAP async) until interrupted")
    p.add_argument("--concurrency", type=int, default=2,
                   help="jobs each worker process runs at the same time (default 2)")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: one per core)")


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the worker."""
    from vo_archive.vo.uws.worker import run_workers

    migrate.upgrade(get_engine(settings), settings.publisher_authority)
    return run_workers(settings, max(1, args.processes), args.concurrency,
                       lambda: print("worker running", flush=True))
