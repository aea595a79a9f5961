"""Selection parameters of run and object downloads."""

from __future__ import annotations

from datetime import date

import pytest

from vo_archive.retrieval.params import (
    ArchiveFormat,
    Selection,
    VersionChoice,
    check_known,
    parse_format,
    parse_radius,
    parse_selection,
)
from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import ParamSet


def sel(**kw: str | list[str]) -> Selection:
    return parse_selection(ParamSet.from_mapping(kw))


@pytest.mark.parametrize(("params", "expected"), [
    ({}, Selection()),
    ({"LEVEL": "final"}, Selection(levels=("final",))),
    ({"level": "Final,INTERMEDIATE"}, Selection(levels=("final", "intermediate"))),
    ({"level": ["final", "final"]}, Selection(levels=("final",))),
    ({"category": "calib", "instrument": "sofi", "mode": "Imaging"},
     Selection(categories=("calib",), instruments=("SOFI",), modes=("imaging",))),
    ({"type": "fluxcal_1d", "product_type": "ARC"},
     Selection(product_types=("fluxcal_1d", "arc"))),
    ({"night": ["2018-03-23", "20180324"]},
     Selection(nights=(date(2018, 3, 23), date(2018, 3, 24)))),
    ({"product": "12,13:2", "id": "14/v3"},
     Selection(products=((12, None), (13, 2), (14, 3)))),
    ({"version": "all"}, Selection(version=VersionChoice.ALL)),
    ({"version": "current"}, Selection()),
    ({"version": " 2 "}, Selection(version=VersionChoice.NUMBER, version_no=2)),
    ({"run": "mar18_d23to28_efosc"}, Selection(runs=("mar18_d23to28_efosc",))),
])
def test_parse_selection(params: dict[str, str], expected: Selection) -> None:
    assert sel(**params) == expected


@pytest.mark.parametrize(("params", "names"), [
    ({"level": "finall"}, "LEVEL"),
    ({"category": "sci"}, "CATEGORY"),
    ({"instrument": "FORS2"}, "INSTRUMENT"),
    ({"mode": "ifu"}, "MODE"),
    ({"type": "spectrum"}, "TYPE"),
    ({"night": "2018-02-30"}, "NIGHT"),
    ({"night": "yesterday"}, "NIGHT"),
    ({"product": "abc"}, "PRODUCT"),
    ({"product": "12:0"}, "PRODUCT"),
    ({"product": "-3"}, "PRODUCT"),
    ({"version": "0"}, "VERSION"),
    ({"version": "latest"}, "VERSION"),
    ({"version": ["1", "2"]}, "VERSION"),
])
def test_bad_selection_names_the_parameter(params: dict[str, str], names: str) -> None:
    with pytest.raises(UsageFault) as err:
        sel(**params)
    assert err.value.parameter == names
    assert names in err.value.text


def test_selection_round_trips_through_query_items() -> None:
    s = sel(level="final", night="20180323", product="5:2", version="all", type="arc")
    assert parse_selection(ParamSet(s.query_items())) == s


@pytest.mark.parametrize(("value", "expected"), [
    (None, ArchiveFormat.TAR), ("tar", ArchiveFormat.TAR), ("ZIP", ArchiveFormat.ZIP),
    ("application/zip", ArchiveFormat.ZIP)])
def test_parse_format(value: str | None, expected: ArchiveFormat) -> None:
    params = ParamSet.from_mapping({"format": value} if value else {})
    assert parse_format(params) is expected


@pytest.mark.parametrize("value", ["rar", "tar.gz", "json"])
def test_parse_format_rejects(value: str) -> None:
    with pytest.raises(UsageFault, match="FORMAT"):
        parse_format(ParamSet.from_mapping({"format": value}))


@pytest.mark.parametrize(("value", "ok"), [("0", 0.0), ("5.5", 5.5), ("3600", 3600.0),
                                           ("-1", None), ("3601", None), ("x", None),
                                           ("nan", None)])
def test_parse_radius(value: str, ok: float | None) -> None:
    params = ParamSet.from_mapping({"RADIUS": value})
    if ok is None:
        with pytest.raises(UsageFault, match="RADIUS"):
            parse_radius(params)
    else:
        assert parse_radius(params) == ok


def test_unknown_parameter_is_refused() -> None:
    with pytest.raises(UsageFault, match="unknown parameter LEVL"):
        check_known(ParamSet.from_mapping({"levl": "final"}), frozenset({"LEVEL"}))
