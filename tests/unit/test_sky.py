"""Sky helpers: coarse orders, range merging, polygon orientation, bounding cones."""

from __future__ import annotations

import pytest

from vo_archive.sky import (NPIX, Box, Circle, Polygon, angular_distance,
                            bounding_circle, counter_clockwise, covering_ranges,
                            merge_ranges, order_for)


@pytest.mark.parametrize("ranges,merged", [
    ([], []), ([(5, 7), (1, 3)], [(1, 3), (5, 7)]), ([(1, 5), (3, 8)], [(1, 8)]),
    ([(1, 3), (3, 4)], [(1, 4)]), ([(1, 10), (2, 3)], [(1, 10)]),
])
def test_merge_ranges(ranges: list[tuple[int, int]], merged: list[tuple[int, int]]
                      ) -> None:
    assert merge_ranges(ranges) == merged


@pytest.mark.parametrize("flat,expected", [
    ([10, 20, 11, 20, 11, 21, 10, 21], [10, 20, 11, 20, 11, 21, 10, 21]),
    ([10, 21, 11, 21, 11, 20, 10, 20], [10, 20, 11, 20, 11, 21, 10, 21]),
    ([359.5, 0, 0.5, 0, 0, 1], [359.5, 0, 0.5, 0, 0, 1]),
    ([0, 1, 0.5, 0, 359.5, 0], [359.5, 0, 0.5, 0, 0, 1]),
])
def test_counter_clockwise(flat: list[float], expected: list[float]) -> None:
    assert counter_clockwise(flat) == expected


@pytest.mark.parametrize("radius,rows,lo,hi", [
    (1 / 3600, 10_000_000, 14, 17), (1.0, 10_000_000, 7, 9), (1.0, 1000, 4, 6),
    (10.0, 10_000_000, 4, 7),
])
def test_order_for_depends_on_radius_and_density(radius: float, rows: int, lo: int,
                                                 hi: int) -> None:
    assert lo <= order_for(radius, rows) <= hi


@pytest.mark.parametrize("region", [
    Polygon(((10.0, 20.0), (12.0, 20.0), (11.0, 23.0))),
    Polygon(((359.0, -1.0), (1.0, -1.0), (1.0, 1.0), (359.0, 1.0))),
    Box(350.0, 360.0, -2.0, 2.0), Box(100.0, 110.0, -90.0, -88.0),
    Box(0.0, 360.0, 80.0, 90.0),
])
def test_bounding_circle_contains_the_region(region: Polygon | Box) -> None:
    c = bounding_circle(region)
    if isinstance(region, Polygon):
        pts = region.vertices
    else:
        pts = [(region.ra_min + (region.ra_max - region.ra_min) * i / 50,
                region.dec_min + (region.dec_max - region.dec_min) * j / 50)
               for i in range(51) for j in range(51)]
    for ra, dec in pts:
        assert float(angular_distance(c.ra, c.dec, ra, dec)) <= c.radius


def test_whole_sky_cones_are_one_range() -> None:
    assert covering_ranges(Circle(0, 0, 100.0)) == [(0, NPIX)]
    assert covering_ranges(Circle(0, 0, 10.0), widen=85.0) == [(0, NPIX)]
