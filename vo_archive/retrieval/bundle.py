"""Streaming tar and zip writers for bulk downloads, with a checksum manifest inside.

A bundle is a list of archived files plus a few small text members (the
manifest, a product list, reports) written first. The writers yield the
container chunk by chunk while reading each file in fixed-size pieces, so memory
does not grow with the size of the download (files in an object store are
streamed by one GET each, read a piece at a time); when the client goes away
the WSGI server closes the generator, which closes the open file (or the
store's connection) and ends the work.

The tar stream's length is known before the first byte (POSIX pax headers are
computed up front), so HTTP responses carry an exact ``Content-Length`` and
browsers and ``curl`` show true progress. Zip members are written by
:mod:`zipfile` to an unseekable sink (data descriptors after each member, ZIP64
where needed), stored without compression: FITS data compress poorly and the
CPU is better spent on throughput.
"""

from __future__ import annotations

import csv
import io
import tarfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vo_archive.ingest.storage import Storage
from vo_archive.retrieval.params import ArchiveFormat
from vo_archive.retrieval.query import ProductFile

CHUNK = 1 << 20
BLOCK = 512
RECORD = 20 * BLOCK
MANIFEST_NAME = "MANIFEST.sha256"
PRODUCTS_NAME = "PRODUCTS.csv"

MIME = {ArchiveFormat.TAR: "application/x-tar", ArchiveFormat.ZIP: "application/zip"}


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a bundle: an archived file, or small generated text."""

    arcname: str
    size: int
    key: str | None = None
    data: bytes | None = None
    sha256: str | None = None
    store: Storage | None = None


def manifest_text(files: Iterable[tuple[str, str]]) -> bytes:
    """Return a ``sha256sum -c`` compatible manifest of (name, sha256) pairs."""
    return "".join(f"{sha}  {name}\n" for name, sha in files).encode()


def parse_manifest(text: str) -> dict[str, str]:
    """Parse a ``sha256sum`` manifest into {name: sha256}.

    Raises
    ------
    ValueError
        If a line is not ``<64 hex digits>  <name>``.
    """
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        sha, sep, name = line.partition("  ")
        if not sep or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"manifest line {n} is not '<sha256>  <name>': {line!r}")
        out[name.lstrip("*")] = sha
    return out


def arcnames(files: list[ProductFile]) -> list[str]:
    """Return a unique member name for each file (its file name when unique)."""
    seen: set[str] = set()
    out = []
    for f in files:
        name = f.filename
        if name in seen:
            name = f"v{f.version_no}/p{f.product_id}/{f.filename}"
        seen.add(name)
        out.append(name)
    return out


def products_csv(files: list[ProductFile], names: list[str]) -> bytes:
    """Return the product list of a bundle as CSV."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["member", "product_id", "version", "current", "size", "sha256", "md5",
                "instrument", "mode", "category", "level", "product_type",
                "prodcatg", "run", "object", "night"])
    for f, name in zip(files, names, strict=True):
        w.writerow([name, f.product_id, f.version_no, f.is_current, f.file_size,
                    f.sha256, f.md5, f.instrument, f.mode, f.category, f.level,
                    f.product_type, f.prodcatg or "", f.run_name or "",
                    f.object or "", f.night.isoformat() if f.night else ""])
    return buf.getvalue().encode()


def build_members(files: list[ProductFile], store: Storage | Path,
                  extra: Iterable[tuple[str, bytes]] = ()) -> list[Member]:
    """Return the members of a bundle: manifest, product list, extras, then files.

    The manifest lists every member but itself, so that ``sha256sum -c
    MANIFEST.sha256`` in the unpacked folder checks the whole download.
    ``store`` is the archive's storage (a folder means local storage there).
    """
    import hashlib

    if not isinstance(store, Storage):
        store = Storage(store)

    names = arcnames(files)
    small = [(PRODUCTS_NAME, products_csv(files, names)), *extra]
    entries = [(n, hashlib.sha256(d).hexdigest()) for n, d in small]
    entries += [(n, f.sha256) for n, f in zip(names, files, strict=True)]
    members = [Member(MANIFEST_NAME, 0, data=manifest_text(entries))]
    members += [Member(n, len(d), data=d) for n, d in small]
    members += [Member(n, f.file_size, key=f.storage_key, sha256=f.sha256,
                       store=store) for n, f in zip(names, files, strict=True)]
    return [Member(m.arcname, len(m.data), data=m.data) if m.data is not None else m
            for m in members]


def _member_bytes(m: Member) -> Iterator[bytes]:
    if m.data is not None:
        yield m.data
    elif m.key is not None and m.store is not None:
        # one piece at a time, from the folder or a streamed GET of the store
        yield from m.store.read_chunks(m.key, m.size)
    else:
        raise AssertionError(f"member {m.arcname} has neither data nor a file")


def _tar_header(prefix: str, m: Member, mtime: int) -> bytes:
    info = tarfile.TarInfo(f"{prefix}/{m.arcname}" if prefix else m.arcname)
    info.size = m.size
    info.mtime = mtime
    info.mode = 0o444
    info.uname = info.gname = "pessto"
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def tar_length(members: list[Member], prefix: str, mtime: int) -> int:
    """Return the exact byte length of :func:`tar_stream` for these members."""
    total = 0
    for m in members:
        total += len(_tar_header(prefix, m, mtime)) + -(-m.size // BLOCK) * BLOCK
    total += 2 * BLOCK
    return -(-total // RECORD) * RECORD


def tar_stream(members: list[Member], prefix: str, mtime: int) -> Iterator[bytes]:
    """Yield a POSIX (pax) tar of the members under folder ``prefix``."""
    total = 0
    for m in members:
        header = _tar_header(prefix, m, mtime)
        total += len(header)
        yield header
        for chunk in _member_bytes(m):
            total += len(chunk)
            yield chunk
        pad = -m.size % BLOCK
        if pad:
            total += pad
            yield bytes(pad)
    end = 2 * BLOCK
    end += -(total + end) % RECORD
    yield bytes(end)


class _Sink:
    """A write-only, unseekable file that hands written bytes to a generator."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered here."""

    def close(self) -> None:
        """Nothing to release (zipfile leaves a file it was given open anyway)."""

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def zip_stream(members: list[Member], prefix: str, mtime: int) -> Iterator[bytes]:
    """Yield a zip (stored, ZIP64-capable) of the members under folder ``prefix``."""
    sink = _Sink()
    stamp = time.gmtime(mtime)[:6]
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED,
                         allowZip64=True) as zf:
        for m in members:
            info = zipfile.ZipInfo(f"{prefix}/{m.arcname}" if prefix else m.arcname,
                                   date_time=stamp)
            info.external_attr = 0o444 << 16
            info.file_size = m.size
            with zf.open(info, "w", force_zip64=m.size >= 0x7FFFFFFF) as dst:
                for chunk in _member_bytes(m):
                    dst.write(chunk)
                    out = sink.take()
                    if out:
                        yield out
            out = sink.take()
            if out:
                yield out
    out = sink.take()
    if out:
        yield out


def stream(fmt: ArchiveFormat, members: list[Member], prefix: str,
           mtime: int | None = None) -> Iterator[bytes]:
    """Yield the bundle in the chosen container format."""
    mtime = int(time.time()) if mtime is None else mtime
    if fmt is ArchiveFormat.ZIP:
        return zip_stream(members, prefix, mtime)
    return tar_stream(members, prefix, mtime)


def payload_bytes(members: list[Member]) -> int:
    """Return the bytes of member content (the download is a little longer)."""
    return sum(m.size for m in members)
