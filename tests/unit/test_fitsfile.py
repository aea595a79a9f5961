"""The fast FITS header reader agrees with astropy and detects broken files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from astropy.io import fits

from vo_archive.ingest.fitsfile import (
    FITSFormatError,
    _parse_printable,
    _parse_value,
    read_structure,
)


def _astropy_cards(header: fits.Header) -> dict[str, object]:
    out: dict[str, object] = {}
    for card in header.cards:
        if card.keyword in ("COMMENT", "HISTORY", "") or card.keyword.startswith(
                "CONTINUE"):
            continue
        out[card.keyword] = card.value
    return out


def test_headers_match_astropy_on_demo_files(demo_files: list[Path]) -> None:
    checked = 0
    for path in demo_files[::7]:
        data = path.read_bytes()
        hdus = read_structure(data)
        with fits.open(path) as hl:
            assert len(hdus) == len(hl)
            for ours, theirs in zip(hdus, hl, strict=True):
                expected = _astropy_cards(theirs.header)
                assert set(ours.header) == set(expected)
                for key, value in expected.items():
                    got = ours.header[key]
                    if isinstance(value, float):
                        assert isinstance(got, float)
                        assert math.isclose(got, value, rel_tol=1e-15)
                    else:
                        assert got == value, key
                checked += 1
    assert checked > 40


def test_long_strings_and_hierarch(tmp_path: Path) -> None:
    hdu = fits.PrimaryHDU()
    long_value = "x" * 150 + " end"
    hdu.header["LONGKEY"] = long_value
    hdu.header["HIERARCH ESO OBS PROG ID"] = "199.D-0143(I)"
    hdu.header["QUOTED"] = "it's"
    hdu.header["FLAG"] = False
    hdu.header["BIG"] = 1.5e-300
    path = tmp_path / "x.fits"
    hdu.writeto(path)
    h = read_structure(path.read_bytes())[0].header
    assert h["LONGKEY"] == long_value
    assert h["ESO OBS PROG ID"] == "199.D-0143(I)"
    assert h["QUOTED"] == "it's"
    assert h["FLAG"] is False
    assert h["BIG"] == 1.5e-300


def test_truncated_and_foreign_files_are_refused(demo_files: list[Path]) -> None:
    data = demo_files[0].read_bytes()
    with pytest.raises(FITSFormatError, match="truncated"):
        read_structure(data[: len(data) - 2880])
    with pytest.raises(FITSFormatError, match="truncated"):
        read_structure(data[:1000])
    with pytest.raises(FITSFormatError, match="not a FITS file"):
        read_structure(b"%PDF-1.4" + b" " * 3000)


@pytest.mark.parametrize(("raw", "expected"), [
    ("                   T / conforms to FITS", (True, "conforms to FITS")),
    ("                    F", (False, "")),
    ("                 1024", (1024, "")),
    ("                  -32 / array data type", (-32, "array data type")),
    ("            42.621546", (42.621546, "")),
    ("              1.5D-03 /", (1.5e-3, "")),
    ("                  1 2 / two tokens", ("1 2", "two tokens")),
    ("                      / no value", (None, "no value")),
    ("", (None, "")),
    ("'ESO-NTT '           ", ("ESO-NTT", "")),
    ("'a/b' / slash inside", ("a/b", "slash inside")),
    ("'it''s' / doubled quote", ("it's", "doubled quote")),
    ("'unterminated", ("'unterminated", "")),
    ("'abc' trailing text", ("'abc' trailing text", "")),
    ("''", ("", "")),
    ("'&' / continued", ("&", "continued")),
    ("  nan", ("nan", "")),
    ("1_000", ("1_000", "")),
])
def test_printable_value_fields_parse_as_the_general_pattern(
        raw: str, expected: tuple[object, str]) -> None:
    field = raw.ljust(70)
    assert _parse_value(field) == expected
    assert _parse_printable(field) == expected
    assert type(_parse_printable(field)[0]) is type(expected[0])
