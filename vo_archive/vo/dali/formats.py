"""RESPONSEFORMAT: one table of output formats, their MIME types, writers and ids.

DALI 1.1 §3.4.3 names the short forms (``votable``, ``csv``, ``tsv``,
``fits``); TAP 1.1 §2.7.3 makes FORMAT a synonym; TAPRegExt §2.5 declares each
format with its MIME type, aliases and, for the VOTable serialisations, an
IVOA id. Output selection (:func:`lookup_format`) and the capabilities both read
:data:`FORMATS`.

Writers take a :class:`~vo_archive.vo.votable.TableDocument`, an iterable of row
tuples (Python values: numbers, strings, booleans, dates, lists of floats for
DALI arrays, None for NULL) and MAXREC, and yield bytes. All but FITS stream;
FITS needs its row count up front and holds at most MAXREC rows.
"""

from __future__ import annotations

import base64
import csv
import io
import logging
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.votable import (
    CHUNK,
    VOTABLE_NS,
    Field,
    Info,
    TableDocument,
    clean_text,
    document_tail,
    stream_votable,
)

log = logging.getLogger(__name__)

Rows = Iterable[Sequence[Any]]
Writer = Callable[[TableDocument, Rows, "int | None"], Iterator[bytes]]
TAPREGEXT = "ivo://ivoa.net/std/TAPRegExt#"


# --- BINARY2 (VOTable 1.3 §5.5) ---------------------------------------------

_SCALAR = {"short": "h", "int": "i", "long": "q", "float": "f", "double": "d",
           "unsignedByte": "B"}


def _encoder(f: Field) -> Callable[[Any], bytes]:
    """Return a function writing one value of field ``f`` (None → its NULL form)."""
    size = f.arraysize
    dt = f.datatype
    if dt == "char" or dt == "unicodeChar":
        codec = "utf-16-be" if dt == "unicodeChar" else "ascii"

        def enc_char(v: Any) -> bytes:
            if v is None:
                return b"\0\0\0\0"
            s = _text_value(v).encode(codec, "replace")
            n = len(s) // (2 if dt == "unicodeChar" else 1)
            return struct.pack(">i", n) + s
        return enc_char
    if dt == "boolean":
        return lambda v: b"?" if v is None else (b"T" if v else b"F")
    code = _SCALAR[dt]
    nan = math.nan if code in "fd" else 0
    if size:
        fixed = size.rstrip("*")
        if size.endswith("*"):
            def enc_var(v: Any) -> bytes:
                vals = [] if v is None else [nan if x is None else x for x in v]
                return struct.pack(f">i{len(vals)}{code}", len(vals), *vals)
            return enc_var
        n = int(fixed)

        def enc_fixed(v: Any) -> bytes:
            vals = [nan] * n if v is None else [nan if x is None else x for x in v]
            vals = (vals + [nan] * n)[:n]
            return struct.pack(f">{n}{code}", *vals)
        return enc_fixed
    packer = struct.Struct(">" + code)
    return lambda v: packer.pack(nan if v is None else v)


def _text_value(v: Any) -> str:
    if isinstance(v, datetime):
        return v.replace(tzinfo=None).isoformat(timespec="milliseconds")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, list | tuple):
        return " ".join(repr(float(x)) for x in v)
    return str(v)


def _votable_head(doc: TableDocument, serialization: str) -> str:
    infos = list(doc.infos)
    if not any(i.name == "QUERY_STATUS" for i in infos):
        infos.insert(0, Info("QUERY_STATUS", "OK"))
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n',
             f'<VOTABLE version="1.3" xmlns="{VOTABLE_NS}" '
             'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
             doc.head_xml, '<RESOURCE type="results">']
    parts += [i.element() for i in infos]
    parts += [p.element() for p in doc.params]
    parts.append(doc.resource_xml)
    parts.append(f"<TABLE name={quoteattr(doc.table_name)}>")
    if doc.description:
        parts.append(f"<DESCRIPTION>{escape(clean_text(doc.description))}</DESCRIPTION>")
    parts += [f.element() for f in doc.fields]
    parts.append(f"<DATA><{serialization}><STREAM encoding=\"base64\">")
    return "".join(parts)


def stream_binary2(doc: TableDocument, rows: Rows, maxrec: int | None
                   ) -> Iterator[bytes]:
    """Yield a VOTable with the rows as base64 BINARY2, in ~64 KiB chunks.

    Overflow and errors while streaming are reported as in
    :func:`vo_archive.vo.votable.stream_votable` (DALI 1.1 §4.4.1–4.4.2).
    """
    fields = list(doc.fields)
    encoders = [_encoder(f) for f in fields]
    mask_len = (len(fields) + 7) // 8
    yield _votable_head(doc, "BINARY2").encode()
    pending = bytearray()
    n = 0
    overflow = maxrec == 0
    error: str | None = None
    try:
        for row in (() if maxrec == 0 else rows):
            if maxrec is not None and n >= maxrec:
                overflow = True
                break
            mask = bytearray(mask_len)
            body = bytearray()
            for i, (v, enc) in enumerate(zip(row, encoders, strict=True)):
                if v is None:
                    mask[i >> 3] |= 0x80 >> (i & 7)
                body += enc(v)
            pending += mask + body
            n += 1
            if len(pending) >= CHUNK:
                cut = len(pending) - len(pending) % 57
                yield base64.encodebytes(bytes(pending[:cut]))
                del pending[:cut]
    except Exception as exc:  # reported in-band, as DALI asks
        log.exception("error while streaming a BINARY2 VOTable")
        error = f"FatalFault: query failed while streaming results: {exc}"
    yield (base64.encodebytes(bytes(pending)).decode()
           + "</STREAM></BINARY2></DATA></TABLE>"
           + document_tail(doc, error, overflow, maxrec)).encode()


# --- CSV / TSV ---------------------------------------------------------------

def _delimited(doc: TableDocument, rows: Rows, maxrec: int | None, tsv: bool
               ) -> Iterator[bytes]:
    buf = io.StringIO()
    if tsv:
        writer: Any = None
    else:
        writer = csv.writer(buf, lineterminator="\r\n")

    def emit(values: Sequence[str]) -> None:
        if writer is not None:
            writer.writerow(values)
        else:
            buf.write("\t".join(v.replace("\t", " ").replace("\n", " ")
                                for v in values) + "\n")

    emit([f.name for f in doc.fields])
    for n, row in enumerate(() if maxrec == 0 else rows):
        if maxrec is not None and n >= maxrec:
            break
        emit(["" if v is None else _cell(v) for v in row])
        if buf.tell() >= CHUNK:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("NaN" if math.isnan(v) else
                                                  ("+Inf" if v > 0 else "-Inf"))
    return _text_value(v)


def stream_csv(doc: TableDocument, rows: Rows, maxrec: int | None) -> Iterator[bytes]:
    """Yield RFC 4180 CSV with a header row of column names."""
    return _delimited(doc, rows, maxrec, tsv=False)


def stream_tsv(doc: TableDocument, rows: Rows, maxrec: int | None) -> Iterator[bytes]:
    """Yield tab-separated values with a header row of column names."""
    return _delimited(doc, rows, maxrec, tsv=True)


# --- FITS --------------------------------------------------------------------

def write_fits(doc: TableDocument, rows: Rows, maxrec: int | None) -> Iterator[bytes]:
    """Yield a FITS file with the rows as a binary table (at most MAXREC rows)."""
    import numpy as np
    from astropy.io import fits
    from astropy.table import Column, MaskedColumn, Table

    data: list[list[Any]] = [[] for _ in doc.fields]
    for n, row in enumerate(() if maxrec == 0 else rows):
        if maxrec is not None and n >= maxrec:
            break
        for col, v in zip(data, row, strict=True):
            col.append(v)
    table = Table()
    for f, values in zip(doc.fields, data, strict=True):
        mask = [v is None for v in values]
        if f.datatype in ("char", "unicodeChar"):
            arr: Any = np.array([_text_value(v) if v is not None else ""
                                 for v in values], dtype=str)
            if arr.dtype.itemsize == 0 or len(arr) == 0:
                arr = np.array(arr, dtype="U1")
        elif f.datatype == "boolean":
            arr = np.array([bool(v) for v in values], dtype=bool)
        elif f.arraysize:
            width = max([len(v) for v in values if v is not None] + [1])
            arr = np.full((len(values), width), np.nan)
            for i, v in enumerate(values):
                if v is not None:
                    arr[i, : len(v)] = [math.nan if x is None else x for x in v]
            mask = [False] * len(values)
        elif f.datatype in ("double", "float"):
            arr = np.array([math.nan if v is None else v for v in values], dtype=float)
            mask = [False] * len(values)
        else:
            arr = np.array([0 if v is None else v for v in values], dtype=np.int64)
        if any(mask):
            table[f.name] = MaskedColumn(arr, name=f.name, mask=np.array(mask),
                                         unit=f.unit or None,
                                         description=f.description)
        else:
            table[f.name] = Column(arr, name=f.name, unit=f.unit or None,
                                   description=f.description)
    hdu = fits.table_to_hdu(table)
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    yield out.getvalue()


# --- The table ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OutputFormat:
    """One RESPONSEFORMAT: what is sent, how, and how capabilities name it."""

    key: str
    mime: str
    aliases: tuple[str, ...]
    writer: Writer
    ivo_id: str | None = None
    votable: bool = False


FORMATS: tuple[OutputFormat, ...] = (
    OutputFormat("votable", "application/x-votable+xml",
                 ("votable", "votable/td", "application/x-votable+xml",
                  "text/xml", "application/xml", "text/x-votable+xml",
                  "application/x-votable+xml;serialization=tabledata"),
                 stream_votable, TAPREGEXT + "output-votable-td", votable=True),
    OutputFormat("votable-binary2",
                 "application/x-votable+xml;serialization=binary2",
                 ("votable/b2", "votable/binary2", "binary2"),
                 stream_binary2, TAPREGEXT + "output-votable-binary2", votable=True),
    OutputFormat("csv", "text/csv;header=present", ("csv", "text/csv"), stream_csv),
    OutputFormat("tsv", "text/tab-separated-values", ("tsv", "tab-separated-values"),
                 stream_tsv),
    OutputFormat("fits", "application/fits", ("fits", "application/x-fits-bintable"),
                 write_fits),
)


def _norm(value: str) -> str:
    return "".join(value.split()).lower()


_BY_NAME: dict[str, OutputFormat] = {}
for _f in FORMATS:
    for _name in (_f.mime, *_f.aliases):
        _BY_NAME[_norm(_name)] = _f


@dataclass(frozen=True, slots=True)
class Selected:
    """The chosen format and the Content-Type to send (the MIME asked for)."""

    format: OutputFormat
    content_type: str


def lookup_format(value: str | None) -> Selected:
    """Return the output format for a RESPONSEFORMAT/FORMAT value (DALI §3.4.3).

    A MIME type asked for is echoed as the Content-Type; a short form gets the
    format's own MIME type. None or empty means the default, TABLEDATA VOTable.

    Raises
    ------
    UsageFault
        If the format is not supported.
    """
    if value is None or value.strip() == "":
        return Selected(FORMATS[0], FORMATS[0].mime)
    fmt = _BY_NAME.get(_norm(value))
    if fmt is None:
        raise UsageFault(f"RESPONSEFORMAT {value!r} is not supported; use one of "
                         + ", ".join(f.aliases[0] for f in FORMATS), "RESPONSEFORMAT")
    asked = value.strip()
    mime_given = asked.lower().startswith(("application/", "text/"))
    content_type = asked if mime_given and asked.lower() != "text/csv" else fmt.mime
    return Selected(fmt, content_type)
