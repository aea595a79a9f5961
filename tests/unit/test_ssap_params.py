"""SSA 1.1 parameter parsing (BAND, TIME, POS, FORMAT)."""

from __future__ import annotations

import math

import pytest

from ssap.params import SpectrumFormat, parse_band, parse_formats, parse_pos, parse_time
from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import Interval, ParamSet


@pytest.mark.parametrize("text,expected", [
    ("4e-7/6e-7", (Interval(4e-7, 6e-7),)),
    ("/6e-7;source", (Interval(-math.inf, 6e-7),)),
    ("5e-7/", (Interval(5e-7, math.inf),)),
    ("5E-7", (Interval(5e-7, 5e-7),)),
    ("1e-7/2e-7,3e-7/4e-7", (Interval(1e-7, 2e-7), Interval(3e-7, 4e-7))),
])
def test_band(text: str, expected: tuple[Interval, ...]) -> None:
    assert parse_band(text) == expected


@pytest.mark.parametrize("text", ["V", "6e-7/4e-7", "-1/5e-7", "0", "1e-7;moon"])
def test_band_errors(text: str) -> None:
    with pytest.raises(UsageFault, match="BAND"):
        parse_band(text)


@pytest.mark.parametrize("text,lo,hi", [
    ("2014-09-20T00:00:00/2014-09-23T00:00:00", 56920.0, 56923.0),
    ("2012-11-10", 56241.0, 56242.0),
    ("2014-09-20T12:00:00.500/", 56920.5 + 0.5 / 86400, math.inf),
])
def test_time(text: str, lo: float, hi: float) -> None:
    (iv,) = parse_time(text)
    assert iv.lo == pytest.approx(lo) and iv.hi == pytest.approx(hi)


@pytest.mark.parametrize("text,expected", [("10,20", (10.0, 20.0)),
                                           ("359.9995,-12.5;ICRS", (359.9995, -12.5)),
                                           ("1e1,+2E1", (10.0, 20.0))])
def test_pos(text: str, expected: tuple[float, float]) -> None:
    assert parse_pos(text) == expected


@pytest.mark.parametrize("values,formats,metadata", [
    ([], set(SpectrumFormat), False), (["metadata"], set(), True),
    (["native"], {SpectrumFormat.FITS}, False),
    (["VOTABLE,fits"], set(SpectrumFormat), False),
    (["image/png"], set(), False),
])
def test_formats(
    values: list[str], formats: set[SpectrumFormat], metadata: bool
) -> None:
    got, meta = parse_formats(ParamSet([("FORMAT", v) for v in values]))
    assert set(got) == formats and meta is metadata
