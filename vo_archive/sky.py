"""Sky indexing: HEALPix NESTED indices at order 29 and cone searches on them.

Every product carries ``healpix29``, the NESTED index of its position at order
29 (nside = 2**29, cells of about 0.4 milli-arcseconds), computed with healpy.
A cone becomes a short list of index ranges at a coarse order, each widened to
order 29, so that a B-tree range scan finds the candidates; an exact distance
test then keeps the true matches.
"""

from __future__ import annotations

import math

import healpy
import numpy as np
import numpy.typing as npt

ORDER = 29
NSIDE = 1 << ORDER
NPIX = 12 * NSIDE * NSIDE


def healpix29(ra: npt.ArrayLike, dec: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Return the order-29 NESTED HEALPix indices of ICRS positions in degrees."""
    ra_a = np.asarray(ra, dtype=np.float64) % 360.0
    dec_a = np.clip(np.asarray(dec, dtype=np.float64), -90.0, 90.0)
    return np.asarray(
        healpy.ang2pix(NSIDE, ra_a, dec_a, nest=True, lonlat=True), dtype=np.int64
    )


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


def cone_ranges(ra: float, dec: float, radius_deg: float,
                order: int | None = None) -> list[tuple[int, int]]:
    """Return order-29 index ranges ``[lo, hi)`` that cover a cone.

    Parameters
    ----------
    ra, dec
        Centre in degrees (ICRS).
    radius_deg
        Radius in degrees (0 < radius <= 180).
    order
        Coarse order of the covering cells; chosen from the radius when None.
    """
    if radius_deg >= 90.0:
        return [(0, NPIX)]
    k = coarse_order(radius_deg) if order is None else order
    nside = 1 << k
    vec = healpy.ang2vec(ra % 360.0, max(-90.0, min(90.0, dec)), lonlat=True)
    pix = healpy.query_disc(nside, vec, math.radians(radius_deg), inclusive=True,
                            nest=True)
    return pixels_to_ranges(np.sort(pix), k)


def pixels_to_ranges(pix: npt.NDArray[np.int64], order: int) -> list[tuple[int, int]]:
    """Merge sorted NESTED pixels at ``order`` into order-29 ranges ``[lo, hi)``."""
    if len(pix) == 0:
        return []
    shift = 2 * (ORDER - order)
    p = np.asarray(pix, dtype=np.int64)
    breaks = np.nonzero(np.diff(p) != 1)[0]
    starts = np.concatenate(([p[0]], p[breaks + 1]))
    ends = np.concatenate((p[breaks], [p[-1]])) + 1
    return [(int(s) << shift, int(e) << shift) for s, e in zip(starts, ends, strict=True)]


def angular_distance(ra1: float, dec1: float, ra2: npt.ArrayLike,
                     dec2: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Great-circle distance in degrees (haversine form, exact at small angles)."""
    r1, d1 = math.radians(ra1), math.radians(dec1)
    r2, d2 = np.radians(np.asarray(ra2, float)), np.radians(np.asarray(dec2, float))
    a = np.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))))
