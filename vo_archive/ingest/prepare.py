"""Per-file ingest work that needs no database: read, classify, checksum, copy.

This runs in worker processes; it returns plain data that the committing
process records. Nothing here touches final storage: files go to the session's
temporary folder only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from vo_archive.ingest.classify import Classification, ClassificationError, classify
from vo_archive.ingest.facts import ProductFacts, extract_facts
from vo_archive.ingest.fitsfile import (
    FITSFormatError,
    HDUInfo,
    HeaderValue,
    read_structure,
)
from vo_archive.ingest.storage import Storage, StoredFile

#: Files up to this size are read whole; larger ones are streamed.
WHOLE_FILE_LIMIT = 64 << 20
HEADER_PROBE = 1 << 20


@dataclass(frozen=True, slots=True)
class Prepared:
    """A file ready to be recorded."""

    source: str
    filename: str
    cls: Classification
    facts: ProductFacts
    #: :func:`header_document` as JSON text: made here, in the reader process,
    #: it travels to the recording process as one string instead of a dict.
    header_json: str
    hdus: int
    stored: StoredFile


@dataclass(frozen=True, slots=True)
class Rejected:
    """A file that will not be archived, and why."""

    source: str
    reason: str


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to kill this (worker) process when its parent dies (Linux)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def _jsonable(value: HeaderValue) -> HeaderValue:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def header_document(hdus: list[HDUInfo]) -> dict[str, object]:
    """Return the headers as one JSON object: primary cards, plus ``XTENSIONS``.

    The primary header's keywords are top-level keys (``header->>'OBJECT'``);
    COMMENT and HISTORY texts are a list under ``HISTORY``; extension headers
    are a list of such objects under ``XTENSIONS`` (a name no FITS keyword can
    take, being nine characters long).
    """

    def one(hdu: HDUInfo) -> dict[str, object]:
        doc: dict[str, object] = {k: _jsonable(v) for k, v in hdu.header.items()}
        if hdu.history:
            doc["HISTORY"] = hdu.history
        return doc

    doc = one(hdus[0])
    if len(hdus) > 1:
        doc["XTENSIONS"] = [one(h) for h in hdus[1:]]
    return doc


def prepare_file(source: str, storage_root: str | Storage, session_id: int,
                 data: bytes | None = None, filename: str | None = None
                 ) -> Prepared | Rejected:
    """Read, check, classify and copy one file into the session folder.

    Parameters
    ----------
    source
        Path of the file (or a label for uploaded bytes).
    storage_root
        The archive's storage, or the root folder of local storage.
    session_id
        Ingest session, naming the temporary folder.
    data
        The file's bytes, when they do not come from ``source`` (uploads).
    filename
        Name to archive the file under; the base name of ``source`` by default.

    Returns
    -------
    Prepared or Rejected
        The recorded facts, or the reason for rejection (a file that cannot be
        read is "unreadable").

    Raises
    ------
    StorageFull
        When the copy into storage fails for want of room or on a read-only
        file system: the archive's state, not the file's.
    """
    name = filename or os.path.basename(source)
    storage = (storage_root if isinstance(storage_root, Storage)
               else Storage(Path(storage_root)))
    try:
        if data is None:
            size = os.path.getsize(source)
            if size == 0:
                return Rejected(source, "empty file, not FITS")
            if size <= WHOLE_FILE_LIMIT:
                with open(source, "rb") as fh:
                    data = fh.read()
                probe: bytes = data
            else:
                with open(source, "rb") as fh:
                    probe = fh.read(HEADER_PROBE)
        else:
            size = len(data)
            probe = data
        hdus = read_structure(probe, size)
        cls = classify(name, hdus[0].header)
        facts = extract_facts(hdus, cls)
        if data is not None:
            stored = storage.copy_in(data, session_id, name)
        else:
            stored = storage.copy_stream(Path(source), session_id)
    except PermissionError:
        return Rejected(source, "unreadable: permission denied")
    except IsADirectoryError:
        return Rejected(source, "is a folder, not a file")
    except FileNotFoundError:
        return Rejected(source, "file not found")
    except OSError as exc:
        return Rejected(source, f"unreadable: {exc.strerror or exc}")
    except FITSFormatError as exc:
        return Rejected(source, str(exc))
    except ClassificationError as exc:
        return Rejected(source, str(exc))
    header_json = json.dumps(header_document(hdus))
    return Prepared(source, name, cls, facts, header_json, len(hdus), stored)
