"""HEALPix indices at order 29 and cone coverage."""

from __future__ import annotations

import healpy
import numpy as np
import pytest

from vo_archive.sky import NSIDE, angular_distance, cone_ranges, healpix29

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
