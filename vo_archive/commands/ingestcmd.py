"""``vo-archive ingest`` and ``vo-archive demo``.

Exit status of ``ingest``: 0 when every file was archived or unchanged, 1 when
some were rejected, 2 for a usage or database error, and
:data:`EXIT_STORAGE_FULL` (3) when the archive's storage took no more files
(full, over quota, read-only) and the ingest stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vo_archive.cli import CommandError, add_command
from vo_archive.config import Settings
from vo_archive.db import migrate
from vo_archive.db.engine import get_engine
from vo_archive.ingest.pipeline import (
    Ingestor,
    IngestStopped,
    IngestSummary,
    iter_fits_paths,
)
from vo_archive.ingest.storage import StorageFull

#: Exit status of an ingest stopped by a storage that takes no more files.
EXIT_STORAGE_FULL = 3


def register(sub: Any) -> None:
    """Add ``ingest`` and ``demo``."""
    p = add_command(sub, "ingest", cmd_ingest,
                    "ingest FITS files and folders into the archive")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--run", help="put every file in this observing run")
    p.add_argument("--workers", type=int, default=None,
                   help="reader processes (default: up to 4, one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    d = add_command(sub, "demo", cmd_demo,
                    "generate a synthetic PESSTO data set, ingest it and serve the app")
    d.add_argument("--products", type=int, default=500, help="number of products")
    d.add_argument("--seed", type=int, default=2012, help="random seed")
    d.add_argument("--no-serve", action="store_true", help="stop after ingest")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8000)


def run_ingest(settings: Settings, paths: list[str], run: str | None = None,
               workers: int | None = None, quiet: bool = False) -> IngestSummary:
    """Ingest with a progress bar on standard error; return the summary."""
    for p in paths:
        if not Path(p).exists():
            raise CommandError(f"{p}: no such file or folder")
    engine = get_engine(settings)
    if migrate.pending_revisions(engine):
        migrate.upgrade(engine, settings.publisher_authority)
    total = sum(1 for _ in iter_fits_paths(paths))
    bar = tqdm(total=total, unit="file", disable=quiet or total == 0, file=sys.stderr,
               dynamic_ncols=True)
    done = 0

    def progress(n: int, rejected: int) -> None:
        nonlocal done
        bar.update(n - done)
        done = n
        bar.set_postfix(rejected=rejected)

    try:
        with Ingestor(settings, engine, run_name=run, workers=workers,
                      progress=progress) as ingestor:
            summary = ingestor.ingest_paths(paths)
    except StorageFull as full:
        # the storage refused the session's start (an object store that does
        # not answer, a bucket that does not exist): nothing was ingested
        raise IngestStopped(full, IngestSummary()) from full
    finally:
        bar.close()
    return summary


def _report_stop(stop: IngestStopped, total: int | None = None) -> int:
    """Say why the ingest stopped and what to do; return the exit status."""
    done = len(stop.summary.results)
    of = f" of {total}" if total is not None else ""
    print(f"vo-archive: error: ingest stopped after {done}{of} files: {stop.cause}; "
          "what was recorded is kept: once the folder takes files again (room "
          "made, or mounted writable), run the same ingest again for the rest",
          file=sys.stderr)
    return EXIT_STORAGE_FULL


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest files; exit 1 if any was rejected, 3 if the storage is full."""
    stop: IngestStopped | None = None
    try:
        summary = run_ingest(settings, args.paths, args.run, args.workers,
                             args.quiet)
    except IngestStopped as exc:
        stop, summary = exc, exc.summary
    for r in summary.rejected:
        print(f"rejected: {r.source}: {r.reason}", file=sys.stderr)
    print(summary.line())
    if stop is not None:
        return _report_stop(stop, sum(1 for _ in iter_fits_paths(args.paths)))
    return 1 if summary.rejected else 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Generate, ingest and serve the demo data set."""
    from vo_archive.demo import generate

    if args.products < 1:
        raise CommandError("--products must be at least 1")
    out = settings.home / "demo-data" / f"n{args.products}-seed{args.seed}"
    marker = out / ".complete"
    if not marker.exists():
        print(f"generating {args.products} demo products in {out}", file=sys.stderr)
        bar = tqdm(total=args.products, unit="file", file=sys.stderr)

        def progress(n: int) -> None:
            bar.update(n - bar.n)

        generate(out, args.products, args.seed, progress=progress)
        bar.update(args.products - bar.n)
        bar.close()
        marker.write_text("ok\n")
    engine = get_engine(settings)
    migrate.upgrade(engine, settings.publisher_authority)
    try:
        summary = run_ingest(settings, [str(out)])
    except IngestStopped as stop:
        print(stop.summary.line())
        return _report_stop(stop)
    print(summary.line())
    if args.no_serve:
        return 0
    from vo_archive.commands.servecmd import serve

    return serve(settings, args.host, args.port)
