"""``vo-archive export run|phase3`` and ``vo-archive fetch``.

``export`` is an operator's tool on the archive's own host: it reads the
database and storage directly as the ``cli`` caller with the ``admin`` role, so
it sees proprietary products too (the same access filter, opened for an
administrator). ``fetch`` is a client: it downloads over HTTP and verifies the
checksums.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tarfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vo_archive.access import Caller, caller_connection
from vo_archive.cli import CommandError, add_command
from vo_archive.config import Settings
from vo_archive.db.engine import get_engine
from vo_archive.vo.dali.errors import Fault
from vo_archive.vo.dali.params import ParamSet

#: Who ``export`` runs as: an administrator on the archive's host.
CLI_CALLER = Caller("cli", frozenset({"admin"}))

_SELECTION_OPTIONS = (
    ("--level", "level", "intermediate, final (or raw); repeatable"),
    ("--category", "category", "calib or science; repeatable"),
    ("--instrument", "instrument", "EFOSC or SOFI; repeatable"),
    ("--mode", "mode", "imaging or spectroscopy; repeatable"),
    ("--type", "type", "product type (e.g. fluxcal_1d); repeatable"),
    ("--night", "night", "night YYYY-MM-DD or YYYYMMDD; repeatable"),
    ("--product", "product", "product id, or ID:VERSION; repeatable"),
)


def register(sub: Any) -> None:
    """Add ``export`` (run, phase3) and ``fetch``."""
    p = sub.add_parser("export", help="export a run's products or its ESO Phase 3 "
                       "release", description="Export from the archive (as an "
                       "administrator: proprietary products included).")
    esub = p.add_subparsers(dest="export_what", metavar="WHAT", required=True)
    r = add_command(esub, "run", cmd_export_run,
                    "write a run's products (or a selection) as tar or zip")
    r.add_argument("run", metavar="RUN", help="run name, e.g. mar18_d23to28_efosc")
    for flag, dest, text in _SELECTION_OPTIONS:
        r.add_argument(flag, dest=dest, action="append", default=[], help=text)
    r.add_argument("--version", default=None,
                   help="current (default), all, or a version number")
    r.add_argument("--format", choices=("tar", "zip"), default=None,
                   help="container (default: from the -o suffix, else tar)")
    r.add_argument("-o", "--output", default=None,
                   help="output file ('-' for standard output; default RUN.tar)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    ph = add_command(esub, "phase3", cmd_export_phase3,
                     "validate a run's ESO Phase 3 release and write it with its "
                     "manifest; exit 1 with the report if it has errors")
    ph.add_argument("run", metavar="RUN")
    ph.add_argument("-o", "--output", default=None,
                    help="a folder (files unpacked into FOLDER/RUN_phase3/) or a "
                    ".tar/.zip file (default: RUN_phase3.tar)")
    ph.add_argument("--quiet", action="store_true", help="no progress bar")
    f = add_command(sub, "fetch", cmd_fetch,
                    "download a bundle or file over HTTP and verify its checksums")
    f.add_argument("url", metavar="URL")
    f.add_argument("-o", "--output", required=True, help="file to write")
    f.add_argument("--quiet", action="store_true", help="no progress bar")


def _selection_params(args: argparse.Namespace) -> ParamSet:
    items: list[tuple[str, str]] = []
    for _, dest, _ in _SELECTION_OPTIONS:
        items += [(dest, v) for v in getattr(args, dest)]
    if args.version:
        items.append(("version", args.version))
    return ParamSet(items)


def _write(chunks: Iterable[bytes], output: str, total: int | None, quiet: bool,
           what: str) -> None:
    """Write chunks to a file (atomically) or standard output, with progress."""
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
               file=sys.stderr, disable=quiet, desc=what, dynamic_ncols=True)
    try:
        if output == "-":
            out = sys.stdout.buffer
            for chunk in chunks:
                out.write(chunk)
                bar.update(len(chunk))
            out.flush()
            return
        dest = Path(output)
        part = dest.with_name(dest.name + ".part")
        try:
            with open(part, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                    bar.update(len(chunk))
            os.replace(part, dest)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    finally:
        bar.close()


def cmd_export_run(args: argparse.Namespace, settings: Settings) -> int:
    """Write a run's selected products."""
    from vo_archive.retrieval import service
    from vo_archive.retrieval.params import ArchiveFormat, parse_selection

    fmt_name = args.format or ("zip" if (args.output or "").endswith(".zip")
                               else "tar")
    fmt = ArchiveFormat(fmt_name)
    try:
        sel = parse_selection(_selection_params(args))
        with caller_connection(get_engine(settings), CLI_CALLER) as conn:
            dl = service.run_download(conn, args.run, sel, fmt, settings.storage_dir,
                                      int(time.time()))
    except Fault as exc:
        raise CommandError(exc.message) from exc
    output = args.output or dl.filename
    _write(dl.chunks(), output, dl.length or dl.payload, args.quiet, dl.filename)
    if output != "-":
        print(f"wrote {output}: {dl.files} products, {dl.payload} bytes of data",
              file=sys.stderr)
    return 0


def _unpack_into(chunks: Iterator[bytes], folder: Path, total: int | None,
                 quiet: bool, what: str) -> None:
    """Write a tar stream unpacked into ``folder`` (through a temporary file)."""
    tmp = folder / f".{what}.tar.part"
    _write(chunks, str(tmp), total, quiet, what)
    try:
        with tarfile.open(tmp) as tf:
            tf.extractall(folder, filter="data")
    finally:
        tmp.unlink(missing_ok=True)


def cmd_export_phase3(args: argparse.Namespace, settings: Settings) -> int:
    """Validate and write a run's Phase 3 release; exit 1 when it has errors."""
    from vo_archive.retrieval import service
    from vo_archive.retrieval.params import ArchiveFormat

    output = args.output or f"{args.run}_phase3.tar"
    to_folder = output.endswith("/") or Path(output).is_dir()
    fmt = ArchiveFormat.ZIP if output.endswith(".zip") else ArchiveFormat.TAR
    try:
        with caller_connection(get_engine(settings), CLI_CALLER) as conn:
            report, dl = service.phase3_download(conn, args.run, fmt,
                                                 settings.storage_dir,
                                                 int(time.time()))
    except Fault as exc:
        raise CommandError(exc.message) from exc
    if dl is None:
        sys.stdout.write(report.text())
        where = Path(output) if to_folder else Path(output).parent
        if where.is_dir():
            rep_path = where / f"{args.run}_phase3_report.txt"
            rep_path.write_text(report.text())
            print(f"report written to {rep_path}", file=sys.stderr)
        print(f"vo-archive: error: the Phase 3 release of {args.run} is "
              f"{report.status} ({report.error_count} errors); nothing exported",
              file=sys.stderr)
        return 1
    if to_folder:
        folder = Path(output)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / dl.prefix
        if target.exists():
            shutil.rmtree(target)
        _unpack_into(dl.chunks(), folder, dl.length, args.quiet, dl.prefix)
        written = str(target)
    else:
        _write(dl.chunks(), output, dl.length or dl.payload, args.quiet, dl.filename)
        written = output
    sys.stdout.write(report.text())
    print(f"wrote {written}: {dl.files} files, release VALID", file=sys.stderr)
    return 0


def cmd_fetch(args: argparse.Namespace, settings: Settings) -> int:
    """Download a URL and verify it; exit 1 on any checksum problem."""
    import requests

    from vo_archive.retrieval.fetch import expected_sha256, verify_bundle, verify_file

    dest = Path(args.output)
    try:
        with requests.get(args.url, stream=True, timeout=(10, 300)) as resp:
            if resp.status_code >= 400:
                text = resp.text.strip().splitlines()
                raise CommandError(f"HTTP {resp.status_code}: "
                                   f"{text[0] if text else resp.reason}")
            length = resp.headers.get("Content-Length")
            _write(resp.iter_content(1 << 20), str(dest),
                   int(length) if length else None, args.quiet, dest.name)
            headers = dict(resp.headers)
    except requests.RequestException as exc:
        raise CommandError(f"download failed: {exc}") from exc
    sha = expected_sha256(headers)
    try:
        result = verify_file(dest, sha) if sha else verify_bundle(dest)
    except ValueError as exc:
        raise CommandError(f"cannot verify {dest}: {exc}") from exc
    for problem in result.problems:
        print(f"{dest}: {problem}", file=sys.stderr)
    if not result.ok:
        print(f"vo-archive: error: {dest} failed verification "
              f"({len(result.problems)} problems)", file=sys.stderr)
        return 1
    print(f"{dest}: {result.checked} files verified (SHA-256)")
    return 0
