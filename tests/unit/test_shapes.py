"""DALI shapes and the SIA 2.0 POS forms."""

from __future__ import annotations

import pytest

from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.shapes import parse_sia_pos
from vo_archive.vo.sky import Box, Circle, Polygon


@pytest.mark.parametrize("text,expected", [
    ("CIRCLE 10 20 1e-05", Circle(10.0, 20.0, 1e-05)),
    ("circle +10.5 -20 0", Circle(10.5, -20.0, 0.0)),
    ("CIRCLE 360 0 1", Circle(0.0, 0.0, 1.0)),
    ("RANGE 0 360 -Inf -80", Box(0.0, 360.0, -90.0, -80.0)),
    ("RANGE -Inf +Inf 89 +Inf", Box(0.0, 360.0, 89.0, 90.0)),
    ("POLYGON 10 20 11 20 11 21", Polygon(((10.0, 20.0), (11.0, 20.0), (11.0, 21.0)))),
])
def test_valid(text: str, expected: object) -> None:
    assert parse_sia_pos(text) == expected


@pytest.mark.parametrize("text,fragment", [
    ("CIRCLE 10 20", "a circle is"), ("CIRCLE 10 95 1", "latitude"),
    ("CIRCLE 400 0 1", "longitude"), ("CIRCLE 1 1 181", "radius"),
    ("RANGE 0 360 10 5", "dec1=10 is above"), ("RANGE 20 10 0 1", "ra1=20"),
    ("POLYGON 1 2 3 4", "at least 3"), ("POLYGON 1 2 1 2 1 2", "3 distinct"),
    ("BOX 1 2 3 4", "not CIRCLE, RANGE or POLYGON"), ("CIRCLE a 1 1", "not a number"),
    ("", "not CIRCLE"), ("CIRCLE NaN 1 1", "not a finite number"),
])
def test_invalid_names_pos(text: str, fragment: str) -> None:
    with pytest.raises(UsageFault) as err:
        parse_sia_pos(text)
    assert err.value.parameter == "POS" and fragment in err.value.message
