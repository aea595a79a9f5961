"""``vo-archive classify-pending``: queue the spectra that have no classification yet.

After an upgrade of the classifier or of the template library (a new version),
or for spectra archived before classification existed: every final 1D science
spectrum without a verdict of the current classifier and library versions is
queued for the job workers (``vo-archive worker``, or those ``serve`` runs).
"""

from __future__ import annotations

import argparse
from typing import Any

from vo_archive.cli import CommandError, add_command
from vo_archive.config import Settings
from vo_archive.vo.dali.errors import FatalFault


def register(sub: Any) -> None:
    """Add ``classify-pending``."""
    p = add_command(sub, "classify-pending", cmd_classify_pending,
                    "queue the final 1D science spectra not yet classified by the "
                    "current classifier and template library")
    p.add_argument("--all-versions", action="store_true",
                   help="also superseded versions (default: current versions only)")
    p.add_argument("--dry-run", action="store_true",
                   help="only say how many would be queued")


def cmd_classify_pending(args: argparse.Namespace, settings: Settings) -> int:
    """Queue the unclassified spectra; print how many."""
    from classify.core import CLASSIFIER_VERSION
    from classify.service import library
    from classify.storage import enqueue_versions, unclassified_versions
    from vo_archive.db.engine import get_engine

    try:
        lib = library(settings)
    except FatalFault as exc:
        raise CommandError(exc.text) from exc
    with get_engine(settings).begin() as conn:
        ids = unclassified_versions(conn, CLASSIFIER_VERSION, lib.version,
                                    current_only=not args.all_versions)
        n = 0 if args.dry_run else enqueue_versions(conn, ids)
    verb = "would queue" if args.dry_run else "queued"
    print(f"{verb} {len(ids) if args.dry_run else n} spectra for classification "
          f"(classifier {CLASSIFIER_VERSION}, library {lib.version})")
    return 0
