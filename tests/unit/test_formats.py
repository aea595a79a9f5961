"""RESPONSEFORMAT lookup and the BINARY2/CSV/TSV/FITS writers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.io.votable import parse

from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.formats import (
    lookup_format,
    stream_binary2,
    stream_csv,
    stream_tsv,
    write_fits,
)
from vo_archive.vo.votable import Field, TableDocument

FIELDS = [Field("i", "long"), Field("x", "double"), Field("s", "char", "*"),
          Field("p", "double", "*", xtype="polygon"), Field("b", "boolean")]
ROWS = [(1, 1.5, "a", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], True),
        (None, None, None, None, None),
        (3, -2.0, "c,d", [0.0, 1.0, 2.0, 1.0, 1.0, 2.0], False)]


@pytest.mark.parametrize(("value", "key", "ctype"), [
    (None, "votable", "application/x-votable+xml"),
    ("votable", "votable", "application/x-votable+xml"),
    ("text/xml", "votable", "text/xml"),
    ("application/x-votable+xml", "votable", "application/x-votable+xml"),
    ("votable/b2", "votable-binary2",
     "application/x-votable+xml;serialization=binary2"),
    ("csv", "csv", "text/csv;header=present"),
    ("text/csv", "csv", "text/csv;header=present"),
    ("TSV", "tsv", "text/tab-separated-values"),
    ("fits", "fits", "application/fits"),
])
def test_lookup(value: str | None, key: str, ctype: str) -> None:
    sel = lookup_format(value)
    assert (sel.format.key, sel.content_type) == (key, ctype)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(UsageFault, match="not supported"):
        lookup_format("application/x-oobleck")


@pytest.mark.parametrize("maxrec", [None, 2])
def test_binary2_round_trips_through_astropy(maxrec: int | None) -> None:
    doc = TableDocument(FIELDS)
    data = b"".join(stream_binary2(doc, iter(ROWS), maxrec))
    table = parse(io.BytesIO(data)).get_first_table()
    arr = table.array
    assert len(arr) == (2 if maxrec else 3)
    assert arr["i"][0] == 1 and arr["s"][0] == "a"
    assert bool(arr["i"].mask[1]) and bool(arr["x"].mask[1])
    assert list(arr["p"][0]) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert (b'value="OVERFLOW"' in data) == bool(maxrec)


def test_csv_and_tsv() -> None:
    doc = TableDocument(FIELDS)
    csv_text = b"".join(stream_csv(doc, iter(ROWS), None)).decode()
    assert csv_text.splitlines()[0] == "i,x,s,p,b"
    assert '3,-2.0,"c,d"' in csv_text
    assert csv_text.splitlines()[2] == ",,,,"
    tsv_text = b"".join(stream_tsv(doc, iter(ROWS), 1)).decode()
    assert tsv_text.splitlines() == ["i\tx\ts\tp\tb",
                                     "1\t1.5\ta\t1.0 2.0 3.0 4.0 5.0 6.0\ttrue"]


def test_fits() -> None:
    data = b"".join(write_fits(TableDocument(FIELDS), iter(ROWS), None))
    with fits.open(io.BytesIO(data)) as hdus:
        t = hdus[1].data
        assert len(t) == 3
        assert t["s"][2] == "c,d"
        assert np.isnan(t["x"][1])
