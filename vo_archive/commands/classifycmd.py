"""``vo-archive classify``: classify supernova spectra from files or archived products.

An argument that names an existing file is read as a spectrum (FITS or text); an
integer is a product ID, whose current file is read from the archive's storage
(as an administrator on the archive's host, like ``export``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vo_archive.cli import CommandError, add_command
from vo_archive.config import Settings


def register(sub: Any) -> None:
    """Add ``classify``."""
    p = add_command(sub, "classify", cmd_classify,
                    "classify supernova spectra (files or product IDs) by template "
                    "cross-correlation")
    p.add_argument("sources", nargs="+", metavar="FILE|PRODUCT_ID",
                   help="spectrum files (FITS, text) or archived product IDs")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    p.add_argument("--zmin", type=float, default=None, help="lowest redshift")
    p.add_argument("--zmax", type=float, default=None, help="highest redshift")
    p.add_argument("--z", type=float, default=None,
                   help="fixed redshift (e.g. the host's): no redshift search")
    p.add_argument("--agemin", type=float, default=None,
                   help="youngest template epoch (days from maximum)")
    p.add_argument("--agemax", type=float, default=None,
                   help="oldest template epoch (days from maximum)")
    p.add_argument("--types", action="append", default=[],
                   help="types or subtypes to compare with, comma-separated "
                   "(Ia,Ib,Ic,II or Ia-91T,IIP...); repeatable")
    p.add_argument("--wmin", type=float, default=None, help="shortest wavelength (Å)")
    p.add_argument("--wmax", type=float, default=None, help="longest wavelength (Å)")
    p.add_argument("--rlap-min", type=float, default=None,
                   help="rlap of a good match (default 5)")
    p.add_argument("--top", type=int, default=None,
                   help="best matches to list (default 10; 3 in the table)")
    p.add_argument("--library", default=None,
                   help="a folder of .lnw templates or a library .npz file "
                   "(default: the configured or shipped library)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _options(args: argparse.Namespace) -> Any:
    from classify.core import ClassifyOptions

    given: dict[str, Any] = {}
    for name in ("zmin", "zmax", "z", "agemin", "agemax", "wmin", "wmax", "rlap_min",
                 "top"):
        value = getattr(args, name)
        if value is not None:
            given[name] = value
    types = tuple(t.strip() for arg in args.types for t in arg.split(",") if t.strip())
    if types:
        given["types"] = types
    try:
        return ClassifyOptions(**given)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _product_file(settings: Settings, product_id: int) -> tuple[bytes, str]:
    """Return the bytes and file name of a product's current version."""
    from sqlalchemy import text

    from vo_archive.access import caller_connection
    from vo_archive.commands.exportcmd import CLI_CALLER
    from vo_archive.db.engine import get_engine
    from vo_archive.ingest.storage import open_storage

    with caller_connection(get_engine(settings), CLI_CALLER) as conn:
        row = conn.execute(
            text("SELECT filename, storage_key FROM archive.version "
                 "WHERE product_id = :pid AND is_current"),
            {"pid": product_id},
        ).first()
    if row is None:
        raise CommandError(f"no product {product_id}")
    try:
        with open_storage(settings).local_path(row.storage_key) as path:
            return path.read_bytes(), f"{product_id}:{row.filename}"
    except OSError as exc:
        raise CommandError(f"product {product_id}: stored file unreadable "
                           f"({exc.strerror})") from exc


def _read(settings: Settings, source: str) -> Any:
    from classify.spectrum import read_spectrum

    path = Path(source)
    if path.exists():
        return read_spectrum(path)
    if source.isdigit() and 0 < int(source) < 1 << 63:
        data, name = _product_file(settings, int(source))
        return read_spectrum(data, name)
    raise CommandError(f"{source}: no such file (nor a product ID)")


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(verdicts: list[dict[str, Any]]) -> str:
    head = ("spectrum", "type", "subtype", "frac", "z", "z_err", "age", "age_err",
            "rlap", "best matches (template subtype phase z rlap)")
    rows = []
    for v in verdicts:
        if "error" in v:
            rows.append((v["spectrum"], "error", v["error"], *([""] * 7)))
            continue
        best = "; ".join(f"{m['template']} {m['subtype']} {m['phase']:+.0f}d "
                         f"z={m['z']:.3f} {m['rlap']:.1f}" for m in v["matches"][:3])
        rows.append((
            v["spectrum"], v["type"] or "no good match", v["subtype"] or "-",
            _fmt(v["fraction"], 2), _fmt(v["z"], 4), _fmt(v["z_err"], 4),
            _fmt(v["age"], 1), _fmt(v["age_err"], 1), _fmt(v["rlap"], 1), best))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = []
    for r in [head, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(r[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, str(r[-1])]).rstrip())
    return "\n".join(lines) + "\n"


def cmd_classify(args: argparse.Namespace, settings: Settings) -> int:
    """Classify each source; exit 1 if any could not be read."""
    from classify.core import classify_spectrum, verdict_to_dict
    from classify.spectrum import SpectrumError
    from classify.templates import TemplateError, configured_library

    options = _options(args)
    try:
        library = configured_library(settings.extra, args.library)
    except TemplateError as exc:
        raise CommandError(str(exc)) from exc
    out: list[dict[str, Any]] = []
    failed = 0
    bar = tqdm(args.sources, unit="spectrum", file=sys.stderr, dynamic_ncols=True,
               disable=args.quiet or len(args.sources) < 2)
    for source in bar:
        try:
            spectrum = _read(settings, source)
            out.append(verdict_to_dict(classify_spectrum(spectrum, options, library)))
        except (SpectrumError, CommandError) as exc:
            failed += 1
            out.append({"spectrum": source, "error": str(exc)})
    bar.close()
    if args.json:
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(_table(out))
    return 1 if failed else 0
