"""SODA cutter: region membership and the pixel box, against a pixel-by-pixel test."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from soda.cutout import NoOverlap, _anchors, _mask, _pixel_box, contains
from vo_archive.vo.sky import Box, Circle, Polygon, Region


@pytest.mark.parametrize(("region", "ra", "dec", "inside"), [
    (Circle(10.0, 20.0, 1.0), 10.0, 20.9, True),
    (Circle(10.0, 20.0, 1.0), 10.0, 21.1, False),
    (Circle(359.9, 0.0, 0.5), 0.2, 0.0, True),  # across RA = 0
    (Circle(0.0, 89.9, 0.2), 180.0, 89.95, True),  # near the pole
    (Box(10.0, 12.0, -1.0, 1.0), 11.0, 0.0, True),
    (Box(10.0, 12.0, -1.0, 1.0), 12.5, 0.0, False),
    (Polygon(((10.0, 0.0), (12.0, 0.0), (11.0, 2.0))), 11.0, 1.0, True),
    (Polygon(((10.0, 0.0), (12.0, 0.0), (11.0, 2.0))), 10.2, 1.5, False),
    # not convex: a V whose notch is outside
    (Polygon(((0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (2.0, 1.0), (0.0, 4.0))), 2.0, 3.0,
     False),
    (Polygon(((0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (2.0, 1.0), (0.0, 4.0))), 3.5, 3.0,
     True),
    (Polygon(((359.0, -1.0), (1.0, -1.0), (0.0, 1.0))), 0.0, 0.0, True),
    (Polygon(((359.0, -1.0), (1.0, -1.0), (0.0, 1.0))), 180.0, 0.0, False),
])
def test_contains(region: Region, ra: float, dec: float, inside: bool) -> None:
    assert bool(contains(region, np.array([ra]), np.array([dec]))[0]) is inside


def _wcs(angle: float = 0.0) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, -30.0]
    w.wcs.crpix = [300.5, 250.5]
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    w.wcs.cd = (np.array([[-c, s], [s, c]]) * 0.24 / 3600).tolist()
    return w


@pytest.mark.parametrize("angle", [0.0, 33.0])
@pytest.mark.parametrize("region", [
    Circle(150.0, -30.0, 20 / 3600),
    Circle(150.02459, -29.98196, 60 / 3600),  # centred off a corner
    Box(149.99, 150.01, -30.02, -30.0),
    Polygon(((150.0, -30.0), (150.02, -30.0), (150.0, -29.98))),
    Circle(150.0, -30.0, 1.0),  # the whole image
    Polygon(((149.99, -30.01), (150.03, -29.99), (150.029, -29.989))),  # a sliver
    Polygon(((149.98, -30.02), (150.02, -30.02), (150.02, -29.98), (150.0, -30.0),
             (149.98, -29.98))),  # not convex
])
def test_pixel_box_is_the_pixel_by_pixel_box(region: Region, angle: float) -> None:
    wcs, shape = _wcs(angle), (500, 600)
    full = _mask(wcs, region, np.arange(600), np.arange(500))
    for ra, dec in _anchors(region):  # the pixels holding a vertex count too
        x, y = (round(float(v)) for v in wcs.world_to_pixel_values(ra, dec))
        if 0 <= x < 600 and 0 <= y < 500:
            full[y, x] = True
    rows, cols = np.nonzero(full)
    assert cols.size
    assert _pixel_box(wcs, shape, region) == (cols.min(), cols.max(), rows.min(),
                                              rows.max())


def test_small_and_far_regions() -> None:
    wcs = _wcs()
    x0, x1, y0, y1 = _pixel_box(wcs, (500, 600), Circle(150.0, -30.0, 0.01 / 3600))
    assert (x1 - x0, y1 - y0) == (0, 0)  # one pixel for a region inside one pixel
    with pytest.raises(NoOverlap):
        _pixel_box(wcs, (500, 600), Circle(330.0, 30.0, 1.0))
    with pytest.raises(NoOverlap):
        _pixel_box(wcs, (500, 600), Box(151.0, 152.0, -30.0, -29.0))
