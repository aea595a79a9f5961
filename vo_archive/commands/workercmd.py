"""``vo-archive worker``: run queued asynchronous (UWS) jobs."""

from __future__ import annotations

import argparse
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
                   help="jobs run at the same time (default 2)")


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the worker."""
    from vo_archive.vo.uws.worker import run_worker

    migrate.upgrade(get_engine(settings), settings.publisher_authority)
    print("worker running", flush=True)
    run_worker(settings, args.concurrency)
    return 0
