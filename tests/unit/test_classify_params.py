"""Classification request parameters: wire values to options, or a UsageFault."""

from __future__ import annotations

import pytest

from classify.core import ClassifyOptions
from classify.params import ResponseFormat, parse_classify, parse_types
from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import ParamSet

DEFAULTS = ClassifyOptions()


@pytest.mark.parametrize(("given", "expected"), [
    ({"ID": "12"}, {}),
    ({"ID": "12", "zmin": "0.01", "ZMAX": "0.3"}, {"zmin": 0.01, "zmax": 0.3}),
    ({"ID": "12", "Z": "0.05"}, {"z": 0.05}),
    ({"ID": "12", "TYPES": "Ia, II,Ib"}, {"types": ("Ia", "II", "Ib")}),
    ({"ID": "12", "AGEMIN": "-5", "AGEMAX": "20"}, {"agemin": -5.0, "agemax": 20.0}),
    ({"ID": "12", "WMIN": "3800", "WMAX": "9000"}, {"wmin": 3800.0, "wmax": 9000.0}),
    ({"ID": "12", "RLAPMIN": "8", "TOP": "3"}, {"rlap_min": 8.0, "top": 3}),
    ({"ID": "12", "ZMIN": "", "TOP": " "}, {}),
])
def test_options(given: dict[str, str], expected: dict[str, object]) -> None:
    req = parse_classify(ParamSet.from_mapping(given), uploaded=False)
    assert req.ident == "12" and req.response is ResponseFormat.VOTABLE
    for name in ("zmin", "zmax", "z", "agemin", "agemax", "types", "wmin", "wmax",
                 "rlap_min", "top"):
        assert getattr(req.options, name) == expected.get(
            name, getattr(DEFAULTS, name)), name


@pytest.mark.parametrize(("given", "uploaded", "message"), [
    ({}, False, "give a spectrum"),
    ({"ID": "1"}, True, "not both"),
    ({"ID": "1", "ZMIN": "0.3", "ZMAX": "0.1"}, False, "ZMIN"),
    ({"ID": "1", "ZMIN": "0.2", "ZMAX": "0.2"}, False, "ZMIN"),
    ({"ID": "1", "ZMAX": "2"}, False, "ZMAX"),
    ({"ID": "1", "Z": "-1"}, False, "Z"),
    ({"ID": "1", "Z": "NaN"}, False, "Z"),
    ({"ID": "1", "AGEMIN": "10", "AGEMAX": "0"}, False, "AGEMIN"),
    ({"ID": "1", "WMIN": "9000", "WMAX": "4000"}, False, "WMIN"),
    ({"ID": "1", "WMIN": "0.4"}, False, "WMIN"),
    ({"ID": "1", "RLAPMIN": "-2"}, False, "RLAPMIN"),
    ({"ID": "1", "TOP": "0"}, False, "TOP"),
    ({"ID": "1", "TOP": "1.5"}, False, "TOP"),
    ({"ID": "1", "TYPES": "Ia;DROP"}, False, "TYPES"),
    ({"ID": "1", "RESPONSEFORMAT": "fits"}, False, "RESPONSEFORMAT"),
    ({"ID": ["1", "2"]}, False, "ID"),
])
def test_refusals(given: dict[str, str | list[str]], uploaded: bool, message: str
                  ) -> None:
    with pytest.raises(UsageFault, match=message):
        parse_classify(ParamSet.from_mapping(given), uploaded)


@pytest.mark.parametrize(("fmt", "expected"), [
    ("json", ResponseFormat.JSON), ("application/json", ResponseFormat.JSON),
    ("votable", ResponseFormat.VOTABLE),
    ("application/x-votable+xml", ResponseFormat.VOTABLE),
])
def test_response_formats(fmt: str, expected: ResponseFormat) -> None:
    req = parse_classify(ParamSet.from_mapping({"RESPONSEFORMAT": fmt}), True)
    assert req.response is expected and req.ident is None


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None), ("", None), ("Ia", ("Ia",)), ("Ia Ia,II", ("Ia", "II")),
    ("Ib-norm,IIb", ("Ib-norm", "IIb")),
])
def test_types(raw: str | None, expected: tuple[str, ...] | None) -> None:
    assert parse_types(raw) == expected
