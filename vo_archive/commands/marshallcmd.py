"""``vo-archive marshall``: the cross-match of targets with the Marshall (issue 19)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from vo_archive.cli import CommandError, add_command
from vo_archive.config import ConfigError, Settings


def register(sub: Any) -> None:
    """Add the ``marshall`` command group."""
    p = sub.add_parser("marshall", help="the Marshall's transients and the archive's "
                                        "targets")
    msub = p.add_subparsers(dest="marshall_command", metavar="ACTION", required=True)
    m = add_command(msub, "match", cmd_match,
                    "match every target with a Marshall transient (name, alias, "
                    "position); report matched / unmatched / ambiguous")
    m.add_argument("--dry-run", action="store_true",
                   help="report what the match would do; change nothing")
    m.add_argument("--radius", type=float, metavar="ARCSEC",
                   help="positional radius in arcseconds (default: [marshall] "
                        "radius_arcsec, else the one in use, 3 at first)")
    m.add_argument("--json", action="store_true", help="machine-readable output")


def marshall_options(settings: Settings) -> tuple[str | None, float | None]:
    """Return the ``[marshall]`` DSN and radius of the configuration.

    Raises
    ------
    ConfigError
        If a value has the wrong type.
    """
    section = settings.extra.get("marshall", {})
    if not isinstance(section, dict):
        raise ConfigError("[marshall] must be a table")
    dsn = section.get("dsn")
    radius = section.get("radius_arcsec")
    if dsn is not None and not isinstance(dsn, str):
        raise ConfigError("[marshall] dsn must be a string")
    if radius is not None and (isinstance(radius, bool)
                               or not isinstance(radius, int | float)):
        raise ConfigError("[marshall] radius_arcsec must be a number")
    return dsn or None, None if radius is None else float(radius)


def cmd_match(args: argparse.Namespace, settings: Settings) -> int:
    """Run the cross-match and print its outcome."""
    import psycopg2

    from vo_archive.db.engine import get_engine
    from vo_archive.marshall.match import match_all

    dsn, radius = marshall_options(settings)
    if args.radius is not None:
        radius = args.radius
    if radius is not None and not radius > 0:
        raise CommandError("the radius must be positive")
    raw = get_engine(settings).raw_connection()
    try:
        report = match_all(raw.driver_connection, dsn, radius, dry_run=args.dry_run)
    except LookupError as exc:
        raise CommandError(str(exc)) from exc
    except psycopg2.OperationalError as exc:
        raise CommandError(f"cannot reach the Marshall: {exc}".strip()) from exc
    finally:
        raw.close()
    if args.json:
        print(json.dumps({
            "dry_run": args.dry_run, "transients": report.transients,
            "matched": report.matched, "unmatched": report.unmatched,
            "ambiguous": report.ambiguous,
            "cases": [{"target_id": c.target_id, "target": c.target,
                       "reason": c.reason,
                       "candidates": [{"transient_id": i, "name": n}
                                      for i, n in c.candidates]}
                      for c in report.cases]}, indent=1))
        return 0
    print(f"{'would match' if args.dry_run else 'matched'} against "
          f"{report.transients} Marshall transients: matched {report.matched}, "
          f"unmatched {report.unmatched}, ambiguous {report.ambiguous}")
    for c in report.cases:
        cands = ", ".join(f"{n} ({i})" for i, n in c.candidates)
        print(f"  ambiguous: {c.target} ({c.target_id}): {c.reason}: {cands}")
    return 0
