"""The arithmetic cone cover against healpy's pixelisation."""

from __future__ import annotations

import math

import healpy
import numpy as np
import numpy.typing as npt
import pytest

from vo_archive.vo.conecover import MAX_CELLS, cone_cells
from vo_archive.vo.sky import order_for

BELT_EDGE = math.degrees(math.asin(2.0 / 3.0))


def _points(ra: float, dec: float, radius: float, rng: np.random.Generator
            ) -> npt.NDArray[np.float64]:
    """Unit vectors of the centre and of points on rings out to the rim."""
    v0 = np.asarray(healpy.ang2vec(ra, dec, lonlat=True), dtype=float)
    a = np.cross(v0, [0.0, 0.0, 1.0])
    if np.linalg.norm(a) < 1e-9:
        a = np.array([1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(v0, a)
    out = [v0[None, :]]
    for f in (0.3, 0.7, 0.95, 0.9999, 1.0 - 1e-9):
        bearing = rng.uniform(0.0, 2.0 * math.pi, 240)
        rho = math.radians(radius) * f
        ring = (np.cos(bearing)[:, None] * a + np.sin(bearing)[:, None] * b)
        out.append(math.cos(rho) * v0[None, :] + math.sin(rho) * ring)
    return np.concatenate(out)


def _cones(seed: int, n: int) -> list[tuple[float, float, float, int]]:
    """Cones of every kind the cover treats apart, with their orders."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = i % 6
        radius = float(10 ** rng.uniform(-3.5, 0.5)) if kind < 5 else float(
            rng.uniform(3.0, 80.0))
        dec = math.degrees(math.asin(rng.uniform(-1.0, 1.0)))
        ra = float(rng.uniform(0.0, 360.0))
        if kind == 1:  # on the belt's edges
            side = float(rng.choice([-1.0, 1.0]))
            dec = side * (BELT_EDGE + rng.normal(0, radius))
        elif kind == 2:  # at or around the poles
            side = float(rng.choice([-1.0, 1.0]))
            dec = side * (90.0 - abs(rng.normal(0, 2 * radius)))
        elif kind == 3:  # across RA = 0 and the caps' quarter boundaries
            edge = float(rng.choice([0.0, 90.0, 180.0, 270.0]))
            ra = (edge + float(rng.normal(0, radius))) % 360
        order = order_for(radius, 10_000_000) + int(rng.integers(-3, 2))
        order = max(0, min(29, order))
        out.append((ra, max(-90.0, min(90.0, dec)), radius, order))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cells_hold_every_point_of_the_cone(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    for ra, dec, radius, order in _cones(seed, 500):
        cells = cone_cells(ra, dec, radius, order)
        while cells is None:
            order -= 1
            cells = cone_cells(ra, dec, radius, order)
        assert cells == sorted(set(cells))
        assert cells[0] >= 0 and cells[-1] < 12 << (2 * order)
        pts = _points(ra, dec, radius, rng)
        wanted = set(healpy.vec2pix(1 << order, pts[:, 0], pts[:, 1], pts[:, 2],
                                    nest=True).tolist())
        missing = wanted - set(cells)
        assert not missing, (ra, dec, radius, order, sorted(missing))


def test_cells_are_few_beyond_what_the_cone_touches() -> None:
    """Near healpy's own inclusive disc: at most a third more cells on average."""
    ours, theirs = [], []
    for ra, dec, radius, order in _cones(9, 300):
        cells = cone_cells(ra, dec, radius, order)
        if cells is None:
            continue
        vec = healpy.ang2vec(ra, dec, lonlat=True)
        disc = healpy.query_disc(1 << order, vec, math.radians(radius), inclusive=True,
                                 nest=True)
        ours.append(len(cells))
        theirs.append(len(disc))
        assert len(cells) <= 4 * len(disc) + 4, (ra, dec, radius, order)
    assert sum(ours) <= 1.4 * sum(theirs)


@pytest.mark.parametrize(("ra", "dec", "radius", "order", "cells"), [
    # a small cone inside one cell of face 4 (RA 0, the equator)
    (0.5, 0.5, 0.001, 4, [int(healpy.ang2pix(16, 0.5, 0.5, nest=True, lonlat=True))]),
    # the north pole: the corners of the four northern faces meet there
    (0.0, 90.0, 0.01, 3, [64 * f + 63 for f in range(4)]),
    # the south pole: the first cell of each southern face
    (0.0, -90.0, 0.01, 3, [64 * f for f in range(8, 12)]),
])
def test_known_cells(ra: float, dec: float, radius: float, order: int,
                     cells: list[int]) -> None:
    assert cone_cells(ra, dec, radius, order) == cells


def test_too_many_cells_gives_none() -> None:
    assert cone_cells(10.0, 20.0, 5.0, 12) is None
    few = cone_cells(10.0, 20.0, 5.0, 4)
    assert few is not None and len(few) <= 2 * MAX_CELLS
