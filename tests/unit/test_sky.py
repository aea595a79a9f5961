"""HEALPix indices at order 29, cone coverage, range merging, polygon orientation,
bounding cones."""

from __future__ import annotations

import healpy
import numpy as np
import pytest

from vo_archive.vo.sky import (
    NPIX,
    NSIDE,
    Box,
    Circle,
    Polygon,
    angular_distance,
    bounding_circle,
    cone_ranges,
    counter_clockwise,
    covering_ranges,
    healpix29,
    merge_ranges,
    order_for,
)

EDGE = [(0.0, 90.0), (0.0, -90.0), (359.9999999, 0.0), (0.0, 0.0), (360.0, 12.5),
        (180.0, -89.9999), (45.0, 41.8103149), (123.4, 0.0)]


def test_indices_equal_healpy_and_lie_within_a_cell() -> None:
    rng = np.random.default_rng(1)
    ra = np.concatenate([rng.uniform(0, 360, 2000), [p[0] for p in EDGE]])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, 2000))),
                          [p[1] for p in EDGE]])
    ours = healpix29(ra, dec)
    theirs = healpy.ang2pix(NSIDE, ra % 360.0, dec, nest=True, lonlat=True)
    assert np.array_equal(ours, theirs)
    assert ours.dtype == np.int64
    back_ra, back_dec = healpy.pix2ang(NSIDE, ours, nest=True, lonlat=True)
    # an order-29 cell is ~0.4 mas across
    assert np.all(angular_distance(0, 0, [0], [0]) == 0)
    sep = np.array([angular_distance(a, d, [b], [e])[0]
                    for a, d, b, e in zip(ra, dec, back_ra, back_dec, strict=True)])
    assert sep.max() * 3.6e6 < 1.0


@pytest.mark.parametrize(("ra", "dec", "radius"), [
    (10.0, 20.0, 1 / 3600), (0.0, 0.0, 1 / 60), (359.99, -30.0, 0.5),
    (0.0, -89.9, 1.0), (200.0, 89.0, 10.0), (90.0, 0.0, 60.0)])
def test_cone_ranges_cover_every_point_inside(ra: float, dec: float,
                                              radius: float) -> None:
    rng = np.random.default_rng(7)
    # points spread inside the cone
    n = 3000
    r = radius * np.sqrt(rng.uniform(0, 1, n)) * 0.999
    bearing = rng.uniform(0, 2 * np.pi, n)
    lat1, lon1 = np.radians(dec), np.radians(ra)
    lat2 = np.arcsin(np.sin(lat1) * np.cos(np.radians(r))
                     + np.cos(lat1) * np.sin(np.radians(r)) * np.cos(bearing))
    lon2 = lon1 + np.arctan2(np.sin(bearing) * np.sin(np.radians(r)) * np.cos(lat1),
                             np.cos(np.radians(r)) - np.sin(lat1) * np.sin(lat2))
    pts_ra, pts_dec = np.degrees(lon2) % 360, np.degrees(lat2)
    idx = healpix29(pts_ra, pts_dec)
    ranges = cone_ranges(ra, dec, radius)
    assert 0 < len(ranges) <= 200
    covered = np.zeros(n, dtype=bool)
    for lo, hi in ranges:
        covered |= (idx >= lo) & (idx < hi)
    assert covered.all()


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
