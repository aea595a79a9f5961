"""Fast reading of FITS headers and structure, without reading data arrays.

astropy's ``Header`` builds a rich object per card, which costs milliseconds per
header; ingest needs thousands of headers a second, so the cards are parsed
here with a small parser that follows FITS 4.0 §4 (fixed-format and free-format
values, ``HIERARCH`` keywords, ``CONTINUE`` long strings). The result is checked
against astropy in the tests.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

BLOCK = 2880
CARD = 80

_END = b"END     "
_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?\Z")


class FITSFormatError(Exception):
    """The bytes are not a FITS file, or it is truncated."""


HeaderValue = str | int | float | bool | None


@dataclass(slots=True)
class HDUInfo:
    """One HDU: its header cards and where its data lies."""

    header: dict[str, HeaderValue]
    comments: dict[str, str]
    data_offset: int
    data_size: int
    history: list[str] = field(default_factory=list)


#: Keywords whose cards are not ``KEY= value``, even when bytes 9-10 read "= ".
_SPECIAL_KEYS = frozenset({"END", "COMMENT", "HISTORY", "", "CONTINUE", "HIERARCH"})
_PRINTABLE = bytes(range(0x20, 0x7F))
_VALUE = re.compile(r"\s*(?:'((?:[^']|'')*)'|([^/]*?))\s*(?:/\s*(.*?))?\s*$", re.S)


def _number(token: str) -> HeaderValue:
    if _INT.match(token):
        return int(token)
    if _FLOAT.match(token):
        return float(token.replace("D", "E").replace("d", "e"))
    return token  # complex or malformed values are kept as text


def _parse_value(raw: str) -> tuple[HeaderValue, str]:
    """Parse the value field of a card (after ``= ``); return value and comment."""
    m = _VALUE.match(raw)
    if m is None:  # pragma: no cover - the pattern matches any text
        return raw.strip(), ""
    string, token, comment = m.groups()
    if string is not None:
        return string.replace("''", "'").rstrip(), comment or ""
    if not token:
        return None, comment or ""
    if token == "T":  # noqa: S105 - a FITS logical, not a password
        return True, comment or ""
    if token == "F":  # noqa: S105 - a FITS logical, not a password
        return False, comment or ""
    return _number(token), comment or ""


def _parse_printable(raw: str) -> tuple[HeaderValue, str]:
    """Parse a value field of printable ASCII text, as :func:`_parse_value` does.

    In such text the pattern's whitespace can only be a space, so the common
    forms need no regular expression: a number, T or F, or a quoted string
    without doubled quotes, each followed by nothing or by a ``/`` comment.
    Anything else goes to :func:`_parse_value`.
    """
    body = raw.lstrip(" ")
    if body[:1] != "'":
        word, sep, comment = body.partition("/")
        word = word.rstrip(" ")
        comment = comment.strip(" ") if sep else ""
        if not word:
            return None, comment
        if word == "T":
            return True, comment
        if word == "F":
            return False, comment
        if word.isdigit():
            return int(word), comment
        return _number(word), comment
    close = body.find("'", 1)
    if close < 0 or body[close + 1 : close + 2] == "'":
        return _parse_value(raw)  # unterminated, or with a doubled quote
    rest = body[close + 1 :].lstrip(" ")
    if not rest:
        return body[1:close].rstrip(), ""
    if rest[0] == "/":
        return body[1:close].rstrip(), rest[1:].strip(" ")
    return _parse_value(raw)


def parse_header_block(data: bytes) -> tuple[dict[str, HeaderValue], dict[str, str],
                                              list[str], int]:
    """Parse cards from ``data`` up to END.

    Returns
    -------
    tuple
        Values by keyword, comments by keyword, HISTORY/COMMENT texts, and the
        number of header bytes (a multiple of 2880).

    Raises
    ------
    FITSFormatError
        If no END card is found.
    """
    values: dict[str, HeaderValue] = {}
    comments: dict[str, str] = {}
    history: list[str] = []
    last_key: str | None = None
    n = len(data) // CARD
    text = data.decode("ascii", errors="replace")
    # FITS 4.0 §4.1.1 allows only printable ASCII in a header: then the usual
    # value fields are parsed without the general pattern, which is the
    # costliest part of reading a header.
    printable = not data.translate(None, _PRINTABLE)  # deletes every printable byte
    parse = _parse_printable if printable else _parse_value
    for i in range(n):
        card = text[i * CARD : (i + 1) * CARD]
        key = card[:8].rstrip()
        if card[8:10] == "= " and key not in _SPECIAL_KEYS:
            value, comment = parse(card[10:])
        elif key == "END":
            end = (i + 1) * CARD
            return values, comments, history, -(-end // BLOCK) * BLOCK
        elif key in ("COMMENT", "HISTORY", ""):
            if key:
                history.append(f"{key} {card[8:].rstrip()}")
            continue
        elif key == "CONTINUE":
            if last_key is not None and isinstance(values.get(last_key), str):
                more, comment = _parse_value(card[8:])
                prev = str(values[last_key])
                if prev.endswith("&"):
                    prev = prev[:-1]
                values[last_key] = prev + (str(more) if more is not None else "")
                if comment:
                    comments[last_key] = comment
            continue
        elif key == "HIERARCH":
            body = card[8:]
            name, sep, rest = body.partition("=")
            if not sep:
                continue
            key = " ".join(name.split())
            value, comment = _parse_value(rest)
        else:
            continue
        values[key] = value
        if comment:
            comments[key] = comment
        last_key = key
    raise FITSFormatError("header has no END card (truncated or not FITS)")


def _data_size(header: dict[str, HeaderValue]) -> int:
    naxis = header.get("NAXIS", 0)
    bitpix = header.get("BITPIX")
    if not isinstance(naxis, int) or not isinstance(bitpix, int):
        raise FITSFormatError("BITPIX or NAXIS missing or not an integer")
    if naxis == 0:
        return 0
    dims = []
    for k in range(1, naxis + 1):
        d = header.get(f"NAXIS{k}")
        if not isinstance(d, int) or d < 0:
            raise FITSFormatError(f"NAXIS{k} missing or invalid")
        dims.append(d)
    pcount = header.get("PCOUNT", 0)
    gcount = header.get("GCOUNT", 1)
    if not isinstance(pcount, int) or not isinstance(gcount, int):
        raise FITSFormatError("PCOUNT or GCOUNT not an integer")
    if header.get("GROUPS") is True and dims and dims[0] == 0:
        dims = dims[1:]
    return abs(bitpix) // 8 * gcount * (pcount + math.prod(dims))


def _has_end_card(block: bytes) -> bool:
    """Whether a header block holds an END card (at the start of a card)."""
    at = block.find(_END)
    while at >= 0:
        if at % CARD == 0:
            return True
        at = block.find(_END, at + 1)
    return False


def read_structure(data: bytes | memoryview, size: int | None = None) -> list[HDUInfo]:
    """Read every HDU's header from the start of a FITS file.

    Parameters
    ----------
    data
        The file's bytes (at least all headers; data arrays are only skipped).
    size
        Total file size, to detect truncation; ``len(data)`` when None.

    Raises
    ------
    FITSFormatError
        If the file does not start like FITS, a header is cut off, or the file is
        shorter than its headers announce.
    """
    total = len(data) if size is None else size
    if bytes(data[:9]) != b"SIMPLE  =":
        raise FITSFormatError("not a FITS file (no SIMPLE card at the start)")
    hdus: list[HDUInfo] = []
    offset = 0
    while offset < total:
        # find END within the following blocks
        chunk_end = offset
        found = None
        while found is None:
            chunk_end += BLOCK
            if chunk_end > len(data):
                if not hdus:
                    raise FITSFormatError("file is truncated inside its primary header")
                raise FITSFormatError(
                    f"file is truncated inside the header of HDU {len(hdus)}"
                )
            if _has_end_card(bytes(data[chunk_end - BLOCK : chunk_end])):
                found = chunk_end
        header, comments, history, nbytes = parse_header_block(
            bytes(data[offset:found])
        )
        data_offset = offset + nbytes
        dsize = _data_size(header)
        padded = -(-dsize // BLOCK) * BLOCK
        if data_offset + dsize > total:
            raise FITSFormatError(
                f"file is truncated: HDU {len(hdus)} needs {data_offset + dsize} "
                f"bytes, the file has {total}"
            )
        hdus.append(HDUInfo(header, comments, data_offset, dsize, history))
        offset = data_offset + padded
        if offset >= total:
            break
        # stop at trailing garbage that is not an extension
        if bytes(data[offset : offset + 8]) != b"XTENSION":
            break
    return hdus
