"""What the routes and the CLI share: resolve a request into files and stream them.

No Flask here: callers pass a connection (opened with
:func:`vo_archive.access.caller_connection`, so the access filter applies) and
parsed parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection

from vo_archive.retrieval import bundle, phase3, query
from vo_archive.retrieval.params import ArchiveFormat, ObjectSearch, Selection
from vo_archive.vo.dali.errors import NotFoundFault


@dataclass(frozen=True, slots=True)
class Download:
    """A bulk download ready to stream: its members, name and length."""

    members: list[bundle.Member]
    prefix: str
    fmt: ArchiveFormat
    mtime: int
    files: int

    @property
    def filename(self) -> str:
        """The suggested file name."""
        return f"{self.prefix}.{self.fmt.value}"

    @property
    def length(self) -> int | None:
        """Exact length in bytes (tar only; zip is not known in advance)."""
        if self.fmt is ArchiveFormat.TAR:
            return bundle.tar_length(self.members, self.prefix, self.mtime)
        return None

    @property
    def payload(self) -> int:
        """Bytes of member content."""
        return bundle.payload_bytes(self.members)

    def chunks(self) -> Iterator[bytes]:
        """Yield the container."""
        return bundle.stream(self.fmt, self.members, self.prefix, self.mtime)


def safe_name(text: str) -> str:
    """Return ``text`` reduced to characters safe in a file name."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "download"


def is_selective(sel: Selection) -> bool:
    """Whether a selection narrows the default "all current products"."""
    return sel != Selection()


def make_download(files: list[query.ProductFile], prefix: str, fmt: ArchiveFormat,
                  storage_root: Path, mtime: int,
                  extra: list[tuple[str, bytes]] | None = None) -> Download:
    """Prepare a bundle of ``files``.

    Raises
    ------
    NotFoundFault
        If nothing is selected.
    """
    if not files:
        raise NotFoundFault("no products match the selection (or none is visible "
                            "to you)")
    members = bundle.build_members(files, storage_root, extra or [])
    return Download(members, safe_name(prefix), fmt, mtime, len(files))


def run_download(conn: Connection, run_name: str, sel: Selection, fmt: ArchiveFormat,
                 storage_root: Path, mtime: int) -> Download:
    """Prepare the download of a run's selected products."""
    run = query.find_run(conn, run_name)
    files = query.run_files(conn, run, sel)
    prefix = run.name if not is_selective(sel) else f"{run.name}_selection"
    return make_download(files, prefix, fmt, storage_root, mtime)


def object_download(conn: Connection, search: ObjectSearch, sel: Selection,
                    fmt: ArchiveFormat, storage_root: Path, mtime: int) -> Download:
    """Prepare the download of an object's selected products."""
    target = query.find_target(conn, search.name)
    files = query.object_files(conn, target, search, sel)
    return make_download(files, target.name, fmt, storage_root, mtime)


def phase3_download(conn: Connection, run_name: str, fmt: ArchiveFormat,
                    storage_root: Path, mtime: int
                    ) -> tuple[phase3.ReleaseReport, Download | None]:
    """Validate a run's Phase 3 release; prepare the bundle only when it is valid."""
    run = query.find_run(conn, run_name)
    report, files = phase3.validate_run(conn, run, storage_root)
    if not report.ok:
        return report, None
    dl = make_download(files, f"{run.name}_phase3", fmt, storage_root, mtime,
                       phase3.report_members(report))
    return report, dl
