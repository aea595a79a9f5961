"""Sky indexing: HEALPix NESTED indices at order 29 and cone searches on them.

Every product carries ``healpix29``, the NESTED index of its position at order
29 (nside = 2**29, cells of about 0.4 milli-arcseconds), computed with healpy.
A cone becomes a short list of index ranges at a coarse order, each widened to
order 29 (the cells come from :mod:`vo_archive.vo.conecover`, in plain arithmetic),
so that a B-tree range scan finds the candidates; an exact distance test then
keeps the true matches.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vo_archive.vo.conecover import cone_cells


def _healpy() -> Any:
    # healpy imports matplotlib on import (about 1.5 s): load it on first use so
    # that command-line tools which never touch the sky start quickly.
    import healpy

    return healpy


def _pixel_lib() -> Any:
    """Return healpy's compiled pixel functions without importing healpy.

    ``import healpy`` runs its package ``__init__``, which imports matplotlib and
    astropy (about 0.9 s): the ingest, which needs only ``ang2pix``, would pay it
    in every process. The extension module is loaded from healpy's folder under
    its own name, so a later ``import healpy`` shares it.
    """
    name = "healpy._healpy_pixel_lib"
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.find_spec("healpy")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        for path in Path(folder).glob("_healpy_pixel_lib*.so"):
            loader = importlib.machinery.ExtensionFileLoader(name, str(path))
            ext_spec = importlib.util.spec_from_file_location(name, path, loader=loader)
            if ext_spec is None:
                continue
            module = importlib.util.module_from_spec(ext_spec)
            loader.exec_module(module)
            sys.modules.setdefault(name, module)
            return sys.modules[name]
    return _healpy().pixelfunc.pixlib  # an unusual installation: the usual way


ORDER = 29
NSIDE = 1 << ORDER
NPIX = 12 * NSIDE * NSIDE


def healpix29(ra: npt.ArrayLike, dec: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Return the order-29 NESTED HEALPix indices of ICRS positions in degrees."""
    ra_a = np.asarray(ra, dtype=np.float64) % 360.0
    dec_a = np.clip(np.asarray(dec, dtype=np.float64), -90.0, 90.0)
    # healpy.ang2pix(..., nest=True, lonlat=True), without its import: the same
    # conversion to co-latitude and longitude in radians, the same C++ function
    theta = np.pi / 2.0 - np.radians(dec_a)
    return np.asarray(_pixel_lib()._ang2pix_nest(NSIDE, theta, np.radians(ra_a)),
                      dtype=np.int64)


def coarse_order(radius_deg: float, max_ranges: int = 64) -> int:
    """Pick the order at which a cone of this radius is covered by few cells.

    The cell size at order k is about 58.6 / 2**k degrees; a cone needs on the
    order of (radius / cell)**2 cells, so choose the finest order whose cells are
    still a few times smaller than the radius, capped so the range count stays
    small (a long list of ranges makes a slow plan).
    """
    radius = max(radius_deg, 1e-7)
    cell = 58.6 / 2.0 ** np.arange(0, ORDER + 1)
    fine = int(np.searchsorted(-cell, -radius / 2.0))
    order = max(0, min(ORDER, fine))
    while order > 0 and (radius / (58.6 / 2.0**order)) ** 2 * 4 > max_ranges:
        order -= 1
    return order


#: (expected rows in the cone, cell size as a fraction of the radius). Few
#: candidate rows: a coarse order and two or three ranges (each range costs a
#: B-tree descent); many: finer cells, more ranges, fewer rows to reject. From a
#: cost model of ~3 µs per range and ~1.5 µs per candidate row, fitted to
#: measured range counts and candidate areas of random cones.
_CELL_PER_RADIUS = ((0.6, 4.0), (1.8, 2.0), (13.0, 1.0), (66.0, 0.5),
                    (270.0, 0.25))
_SKY_DEG2 = 41252.96125


def order_for(radius_deg: float, rows: int) -> int:
    """Pick the coarse order of a cone's covering cells.

    Parameters
    ----------
    radius_deg
        Cone radius in degrees.
    rows
        Number of positions in the indexed table (its density decides whether
        finer cells pay off).
    """
    radius = max(radius_deg, 1e-9)
    expected = rows * math.pi * radius * radius / _SKY_DEG2
    cell = 0.125 * radius
    for limit, per_radius in _CELL_PER_RADIUS:
        if expected <= limit:
            cell = per_radius * radius
            break
    order = round(math.log2(58.6 / cell))
    return max(0, min(ORDER, order))


def cone_ranges(ra: float, dec: float, radius_deg: float,
                order: int | None = None, rows: int = 10_000_000
                ) -> list[tuple[int, int]]:
    """Return order-29 index ranges ``[lo, hi)`` that cover a cone.

    Parameters
    ----------
    ra, dec
        Centre in degrees (ICRS).
    radius_deg
        Radius in degrees (0 < radius <= 180).
    order
        Coarse order of the covering cells; chosen from the radius and ``rows``
        when None. A coarser one is taken when the cone needs more than
        :data:`vo_archive.vo.conecover.MAX_CELLS` cells at it.
    rows
        Size of the indexed table, for choosing the order.
    """
    if radius_deg >= 90.0:
        return [(0, NPIX)]
    k = order_for(radius_deg, rows) if order is None else order
    cells = cone_cells(ra, dec, radius_deg, k)
    while cells is None:
        # at order 0 a cone below 90° has at most 12 cells; none is found only
        # for a radius within the cover's padding of 90°: the whole sky
        k -= 1
        if k < 0:
            return [(0, NPIX)]
        cells = cone_cells(ra, dec, radius_deg, k)
    return cells_to_ranges(cells, k)


def cells_to_ranges(cells: list[int], order: int) -> list[tuple[int, int]]:
    """Merge sorted NESTED cells at ``order`` into order-29 ranges ``[lo, hi)``."""
    shift = 2 * (ORDER - order)
    out: list[tuple[int, int]] = []
    lo = hi = cells[0]
    for p in cells:
        if p > hi + 1:
            out.append((lo << shift, (hi + 1) << shift))
            lo = p
        hi = p
    out.append((lo << shift, (hi + 1) << shift))
    return out


def angular_distance(ra1: float, dec1: float, ra2: npt.ArrayLike,
                     dec2: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Great-circle distance in degrees (haversine form, exact at small angles)."""
    r1, d1 = math.radians(ra1), math.radians(dec1)
    r2, d2 = np.radians(np.asarray(ra2, float)), np.radians(np.asarray(dec2, float))
    a = (
        np.sin((d2 - d1) / 2) ** 2
        + math.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    )
    distance: npt.NDArray[np.float64] = np.degrees(
        2 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    )
    return distance


# -- Regions and their covering ranges ------------------------------------------

#: Most index ranges a region is turned into (a generic plan over many ranges is
#: slow, and each range costs one B-tree descent).
MAX_RANGES = 40


@dataclass(frozen=True, slots=True)
class Circle:
    """A cone: centre and radius in degrees (ICRS)."""

    ra: float
    dec: float
    radius: float


@dataclass(frozen=True, slots=True)
class Polygon:
    """A spherical polygon: vertices in degrees, joined by great circles."""

    vertices: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Box:
    """A coordinate range (SIA 2.0 ``RANGE``).

    ``ra_min`` may exceed ``ra_max`` when the range crosses RA = 0.
    """

    ra_min: float
    ra_max: float
    dec_min: float
    dec_max: float

    @property
    def full_ra(self) -> bool:
        """Whether the box spans every right ascension."""
        return self.ra_max - self.ra_min >= 360.0


Region = Circle | Polygon | Box


def unit_vectors(ra: npt.ArrayLike, dec: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Return unit vectors, shape (..., 3), of positions given in degrees."""
    a, d = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


def _lonlat(vec: npt.NDArray[np.float64]) -> tuple[float, float]:
    x, y, z = (float(c) for c in vec / np.linalg.norm(vec))
    return math.degrees(math.atan2(y, x)) % 360.0, math.degrees(
        math.asin(max(-1, min(1, z)))
    )


def _box_samples(
    box: Box, n: int = 24
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, float]:
    span = (box.ra_max - box.ra_min) % 360.0 if not box.full_ra else 360.0
    ras = box.ra_min + np.linspace(0.0, span, n)
    decs = np.linspace(box.dec_min, box.dec_max, n)
    ra_g, dec_g = np.meshgrid(ras, decs)
    return (
        ra_g.ravel(),
        dec_g.ravel(),
        span / (n - 1),
        (box.dec_max - box.dec_min) / (n - 1),
    )


def bounding_circle(region: Region) -> Circle:
    """Return a cone containing ``region`` (radius 180 when none smaller is found).

    A polygon lies inside any cap of radius below 90° holding its vertices (such
    a cap is geodesically convex). A box's edges of constant declination are not
    great circles, so its cap comes from a grid of points over the box, widened
    by the grid step.
    """
    if isinstance(region, Circle):
        return region
    if isinstance(region, Polygon):
        ras = np.array([v[0] for v in region.vertices])
        decs = np.array([v[1] for v in region.vertices])
        margin = 0.0
    else:
        if region.dec_min <= -90.0 and region.dec_max >= 90.0:
            return Circle(0.0, 0.0, 180.0)
        ras, decs, dra, ddec = _box_samples(region)
        margin = math.hypot(dra, ddec)
    total = unit_vectors(ras, decs).sum(axis=0)
    if isinstance(region, Box) and region.full_ra:
        # a band around the pole (or the equator): centre on the nearer pole
        pole = 90.0 if region.dec_min + region.dec_max > 0 else -90.0
        radius = abs(pole - (region.dec_min if pole > 0 else region.dec_max))
        return Circle(0.0, pole, min(180.0, radius + 1e-9))
    if np.linalg.norm(total) < 1e-9:
        return Circle(0.0, 0.0, 180.0)
    ra0, dec0 = _lonlat(total)
    radius = float(np.max(angular_distance(ra0, dec0, ras, decs))) + margin
    if isinstance(region, Polygon) and radius >= 90.0:
        return Circle(ra0, dec0, 180.0)
    return Circle(ra0, dec0, min(180.0, radius * (1 + 1e-9) + 1e-9))


def covering_ranges(region: Region, widen: float = 0.0, rows: int = 10_000_000
                    ) -> list[tuple[int, int]]:
    """Return order-29 ranges ``[lo, hi)`` covering ``region`` widened by ``widen``°.

    Parameters
    ----------
    region
        Circle, polygon or box; non-circles are covered through their bounding
        circle.
    widen
        Degrees to add to the radius (the largest footprint extent, when the
        index holds centres and the query asks for overlapping footprints).
    rows
        Size of the indexed table (see :func:`order_for`).
    """
    c = bounding_circle(region)
    radius = c.radius + widen
    if radius >= 90.0:
        return [(0, NPIX)]
    ranges = cone_ranges(c.ra, c.dec, radius, rows=rows)
    if len(ranges) > MAX_RANGES:
        ranges = cone_ranges(c.ra, c.dec, radius, order_for(radius, rows) - 1)
    return ranges


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return sorted, disjoint ranges covering the union of ``ranges``."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def counter_clockwise(flat: list[float]) -> list[float]:
    """Return polygon vertices ``[ra1, dec1, ...]`` in counter-clockwise order.

    Counter-clockwise as DALI 1.1 §3.3.7 means it: with RA increasing to the
    right and Dec upwards (seen from outside the sphere), the inside on the left.
    """
    n = len(flat) // 2
    if n < 3:
        return flat
    # sum of (v_i x v_i+1) . centre, in plain floats (a few vertices per row)
    vs = []
    for i in range(n):
        a, d = math.radians(flat[2 * i]), math.radians(flat[2 * i + 1])
        vs.append((math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)))
    cx, cy, cz = (sum(v[k] for v in vs) for k in range(3))
    turn = 0.0
    for i in range(n):
        (x1, y1, z1), (x2, y2, z2) = vs[i], vs[(i + 1) % n]
        turn += (y1 * z2 - z1 * y2) * cx + (z1 * x2 - x1 * z2) * cy + \
            (x1 * y2 - y1 * x2) * cz
    if turn >= 0:
        return flat
    pairs = [flat[2 * i:2 * i + 2] for i in range(n)][::-1]
    return [x for p in pairs for x in p]
