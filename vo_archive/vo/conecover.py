"""The NESTED HEALPix cells that cover a cone, in plain arithmetic.

A cone search turns its cone into a few index ranges before it touches the
database. healpy's ``query_disc`` does this rigorously, but each call costs
15–20 µs of array set-up for what is, for a small cone, one to four cells, and
several times that when the process has been waiting on a socket and its caches
have gone cold: more than pgSphere's whole GiST cone search on a table of ten
million rows. Here the cells come from the HEALPix projection itself (Górski et
al. 2005, ApJ 622, 759, §4; the formulas of healpix_base ``loc2pix``):

* In the equatorial belt (|z| <= 2/3) a point has the continuous coordinates
  ``jp = n (1/2 + t - 3z/4)`` and ``jm = n (1/2 + t + 3z/4)`` with
  ``t = 2 phi / pi``; its cell is ``(floor(jp), floor(jm))``, whose face and
  position in the face follow from those integers. With ``s = (jp + jm) / 2``
  (linear in the longitude) and ``u = (jm - jp) / 2`` (linear in z), a
  longitude interval times a z interval is a rectangle in (s, u), and the cells
  meeting it are found exactly, strip by strip.
* In a polar cap (|z| > 2/3) ``jp = tp * w`` and ``jm = (1 - tp) * w`` with
  ``tp`` the longitude within the cap's quarter and ``w = n sqrt(3 (1 - |z|))``;
  both are monotonic in ``tp`` and ``w``, so the extremes of a region's ``tp``
  and ``w`` bound its cells.

The cone is cut into slabs of z; each slab gets its exact longitude extent (the
widest the cone is within the slab), and each part of a slab in the belt or a
cap gets the cells of its rectangle there. The union is a superset of the cells
the cone meets, never fewer: a cell is left out only when a bound proves that no
point of the cone lies in it. Tested against healpy on cones at the poles,
across RA = 0/360, on the belt's edges and the caps' quarter boundaries.
"""

from __future__ import annotations

import math

_TWO_THIRDS = 2.0 / 3.0
_HALF_PI = 0.5 * math.pi
_TWO_OVER_PI = 2.0 / math.pi
_DEG = math.pi / 180.0
#: Radians added to every radius: pgSphere's comparisons allow 1e-9 rad
#: (``EPSILON`` in its ``float8`` helpers), and rounding must never drop a cell.
_PAD_RAD = 1e-8
#: Cell units added to every bound against rounding.
_PAD = 1e-6
#: Most cells a cone becomes here; a caller asks again at a coarser order.
MAX_CELLS = 160


def _spread_table() -> tuple[int, ...]:
    out = []
    for v in range(256):
        s = 0
        for bit in range(8):
            s |= ((v >> bit) & 1) << (2 * bit)
        out.append(s)
    return tuple(out)


_SPREAD = _spread_table()
#: The even and the odd bits of a cell number (x and y of a spread pair).
_EVEN = 0x5555555555555555
_ODD = 0xAAAAAAAAAAAAAAAA
#: The spread of every 16-bit value: one lookup per coordinate up to order 16.
_SPREAD16 = tuple(_SPREAD[v & 255] | _SPREAD[v >> 8] << 16 for v in range(65536))


def _face_table() -> tuple[tuple[int, ...], ...]:
    # belt: the face of the cell whose jp and jm lie in face columns ifp, ifm
    # (0-4, the fifth the first seen again past t = 4): equal columns, an
    # equatorial face; jm's column ahead, a northern one; jp's, a southern one
    return tuple(tuple(ifp | 4 if ifp == ifm else ifp if ifp < ifm else ifm + 8
                       for ifm in range(5)) for ifp in range(5))


#: Face of a belt cell from the face columns of its jp and jm.
_FACE = _face_table()


def _spread(v: int) -> int:
    """Put the bits of ``v`` (< 2**32) on the even bit positions."""
    t = _SPREAD
    if v < 256:
        return t[v]
    if v < 65536:
        return t[v & 255] | t[v >> 8] << 16
    return (t[v & 255] | t[(v >> 8) & 255] << 16 | t[(v >> 16) & 255] << 32
            | t[v >> 24] << 48)


def _half_width(za: float, zb: float, z0: float, cos_r: float, cos_d: float,
                z_wide: float) -> float:
    """Return half a pole-free cone's longitude extent over z in ``[za, zb]``.

    In units of t = 2 phi / pi; the widest point lies at ``z_wide`` (or at the
    band's nearer end).
    """
    z = min(max(z_wide, za), zb)
    c = (cos_r - z * z0) / (math.sqrt(max(1e-300, 1.0 - z * z)) * cos_d)
    return math.acos(max(-1.0, min(1.0, c))) * _TWO_OVER_PI + _PAD


def _belt_rows(cells: set[int], order: int, t: float, z_lo: float, z_hi: float,
               shape: tuple[float, float, float, float] | None) -> None:
    """Add the belt cells of the cone's part with z in ``[z_lo, z_hi]``.

    The cells with ``jm - jp = d`` form a row at ``u`` in ``((d-1)/2, (d+1)/2)``;
    each row gets the cone's longitude extent over that band of z, and the cells
    of the row that reach into it (``shape`` None: all longitudes). A cell is
    ``(jp, jm) = ((S - d) / 2, (S + d) / 2)`` for ``S = jp + jm``.
    """
    n = 1 << order
    mask = n - 1
    n4, n5 = 4 * n, 5 * n
    shift = 2 * order
    spread = _SPREAD16.__getitem__ if order <= 16 else _spread
    k = 0.75 * n  # u per unit of z
    u0, u1 = k * z_lo - _PAD, k * z_hi + _PAD
    for d in range(math.ceil(2.0 * u0 - 1.0), math.floor(2.0 * u1 + 1.0) + 1):
        # the part of the row's band (d-1)/2 < u < (d+1)/2 the cone spans
        ua, ub = max(0.5 * (d - 1), u0), min(0.5 * (d + 1), u1)
        if shape is None:
            sa, sb = 0.5 * n - _PAD, 4.5 * n + _PAD
        else:
            za = min(max(ua / k, z_lo), z_hi)
            zb = max(min(ub / k, z_hi), za)
            half = _half_width(za, zb, *shape)
            if half >= 2.0:
                sa, sb = 0.5 * n - _PAD, 4.5 * n + _PAD
            else:
                sa, sb = n * (0.5 + t - half) - _PAD, n * (0.5 + t + half) + _PAD
        # the cell (jp, jp + d) spans s from jp + g to jp + 1 + d - g over u in
        # [ua, ub], g = max(u, d - u) at the u nearest d/2: exact for the row
        u = min(max(0.5 * d, ua), ub)
        g = max(u, d - u)
        first = 2 * math.ceil(sa - 1.0 - d + g) + d
        last = 2 * math.floor(sb - g) + d
        if (first - d) >> 1 > n and (last + d) >> 1 < n4 - 1:
            # away from t = 0 every cell has one valid form, (jp, jm) itself.
            # Along the row jp and jm grow by one: x = jm mod n grows and
            # y = n - 1 - jp mod n shrinks, stepped in their bit-spread form
            # (dilated arithmetic) until a face edge asks for a fresh start
            jp, jm = (first - d) >> 1, (first + d) >> 1
            steps = (last - first) >> 1
            while steps >= 0:
                base = _FACE[jp >> order][jm >> order] << shift
                x, y = jm & mask, n - (jp & mask) - 1
                sx, sy = spread(x), spread(y) << 1
                run = min(steps, mask - x, y)  # cells left in this face
                cells.add(base | sx | sy)
                for _ in range(run):
                    sx = ((sx | _ODD) + 1) & _EVEN
                    sy = (sy - 2) & _ODD
                    cells.add(base | sx | sy)
                jp += run + 1
                jm += run + 1
                steps -= run + 1
            continue
        for total in range(first, last + 1, 2):
            jp, jm = (total - d) >> 1, (total + d) >> 1
            # the same cell seen with t in [0, 4): unwrapped coordinates differ
            # by 4n; the valid ones have 0 <= jp, jm < 5n and |jm - jp| <= n
            for a, b in ((jp, jm), (jp + n4, jm + n4), (jp - n4, jm - n4)):
                if a < 0 or b < 0 or a >= n5 or b >= n5 or abs(b - a) > n:
                    continue
                cells.add(_FACE[a >> order][b >> order] << shift | spread(b & mask)
                          | spread(n - (a & mask) - 1) << 1)


def _cap_rows(cells: set[int], order: int, north: bool, t: float, z_lo: float,
              z_hi: float, shape: tuple[float, float, float, float] | None) -> None:
    """Add the cells of a cap for the cone's part with z in ``[z_lo, z_hi]``.

    The cells with ``jp + jm = S`` hold the points with ``w`` in ``[S, S + 2)``;
    each such row gets the cone's longitude extent over that band of z.
    """
    n = 1 << order
    shift = 2 * order
    spread = _SPREAD16.__getitem__ if order <= 16 else _spread
    a_lo, a_hi = (z_lo, z_hi) if north else (-z_hi, -z_lo)  # |z| range
    w0 = n * math.sqrt(max(0.0, 3.0 * (1.0 - a_hi))) - _PAD
    w1 = n * math.sqrt(max(0.0, 3.0 * (1.0 - a_lo))) + _PAD
    inv3n2 = 1.0 / (3.0 * n * n)
    for total in range(max(0, math.floor(w0) - 1), min(2 * n - 2, math.floor(w1)) + 1):
        wa, wb = max(float(total), w0), min(total + 2.0, w1)
        if shape is None:
            t_lo, t_hi = 0.0, 4.0 - 1e-12
        else:
            za, zb = 1.0 - wb * wb * inv3n2, 1.0 - max(wa, 0.0) ** 2 * inv3n2
            if not north:
                za, zb = -zb, -za
            za = min(max(za, z_lo), z_hi)
            zb = max(min(zb, z_hi), za)
            half = _half_width(za, zb, *shape)
            if half >= 2.0:
                t_lo, t_hi = 0.0, 4.0 - 1e-12
            else:
                t_lo, t_hi = t - half, t + half
        for q in range(math.floor(t_lo), math.floor(t_hi) + 1):
            tp0 = max(t_lo - q, 0.0)
            tp1 = min(t_hi - q, 1.0)
            if tp0 > tp1:
                continue
            base = ((q & 3) if north else 8 + (q & 3)) << shift
            # jp = tp w and jm = (1 - tp) w, and jm = total - jp
            jm_lo = max(0, math.floor((1.0 - tp1) * wa - _PAD))
            jm_hi = min(n - 1, math.floor((1.0 - tp0) * wb + _PAD))
            lo = max(0, math.floor(tp0 * wa - _PAD), total - jm_hi)
            hi = min(n - 1, math.floor(tp1 * wb + _PAD), total - jm_lo)
            for jp in range(lo, hi + 1):
                jm = total - jp
                if north:
                    cells.add(base | spread(n - jm - 1) | spread(n - jp - 1) << 1)
                else:
                    cells.add(base | spread(jp) | spread(jm) << 1)


def _few_cells(order: int, n: int, t: float, z_lo: float, z_hi: float, r: float,
               cos_d: float) -> list[int] | None:
    """Return the cells of a small cone within one face (at most 2 x 2), or None.

    The common case written out: one slab, the cone wholly in the belt away
    from t = 0 and within one face, or wholly in one quarter of a cap.
    """
    half = math.asin(min(1.0, math.sin(r) / cos_d)) * _TWO_OVER_PI + _PAD
    spread = _spread
    out = []
    if z_lo > -_TWO_THIRDS and z_hi < _TWO_THIRDS:
        s0 = n * (0.5 + t - half) - _PAD
        s1 = n * (0.5 + t + half) + _PAD
        u0 = 0.75 * n * z_lo - _PAD
        u1 = 0.75 * n * z_hi + _PAD
        p_lo, p_hi = math.floor(s0 - u1), math.floor(s1 - u0)
        m_lo, m_hi = math.floor(s0 + u0), math.floor(s1 + u1)
        ifp, ifm = p_lo >> order, m_lo >> order
        if (p_lo <= n or m_hi >= 4 * n or p_hi >> order != ifp
                or m_hi >> order != ifm or p_hi - p_lo > 1 or m_hi - m_lo > 1):
            return None
        base = _FACE[ifp][ifm] << (2 * order)
        mask = n - 1
        for jp in range(p_lo, p_hi + 1):
            iy = spread(n - (jp & mask) - 1) << 1
            for jm in range(m_lo, m_hi + 1):
                # the cell's bounding box in (s, u) against the cone's rectangle
                if (0.5 * (jp + jm) + 1.0 < s0 or 0.5 * (jp + jm) > s1
                        or 0.5 * (jm - jp) + 0.5 < u0 or 0.5 * (jm - jp) - 0.5 > u1):
                    continue
                out.append(base | spread(jm & mask) | iy)
    elif z_lo > _TWO_THIRDS or z_hi < -_TWO_THIRDS:
        q = math.floor(t - half)
        if q < 0 or q != math.floor(t + half):
            return None
        tp0, tp1 = t - half - q, t + half - q
        north = z_lo > 0.0
        za_lo, za_hi = (z_lo, z_hi) if north else (-z_hi, -z_lo)
        w0 = n * math.sqrt(3.0 * (1.0 - za_hi)) - _PAD
        w1 = n * math.sqrt(3.0 * (1.0 - za_lo)) + _PAD
        p_lo = max(0, math.floor(tp0 * w0 - _PAD))
        p_hi = min(n - 1, math.floor(tp1 * w1 + _PAD))
        m_lo = max(0, math.floor((1.0 - tp1) * w0 - _PAD))
        m_hi = min(n - 1, math.floor((1.0 - tp0) * w1 + _PAD))
        if p_hi - p_lo > 1 or m_hi - m_lo > 1:
            return None
        base = (q if north else q + 8) << (2 * order)
        for jp in range(p_lo, p_hi + 1):
            for jm in range(m_lo, m_hi + 1):
                if jp + jm > w1 or jp + jm + 2 < w0:
                    continue
                if north:
                    out.append(base | spread(n - jm - 1) | spread(n - jp - 1) << 1)
                else:
                    out.append(base | spread(jp) | spread(jm) << 1)
    else:
        return None
    out.sort()
    return out


def cone_cells(ra: float, dec: float, radius_deg: float, order: int,
               max_cells: int = MAX_CELLS) -> list[int] | None:
    """Return NESTED cells at ``order`` that cover a cone.

    Parameters
    ----------
    ra, dec
        Centre in degrees.
    radius_deg
        Radius in degrees (below 90).
    order
        HEALPix order of the cells (0–29).
    max_cells
        Give up (None) when the cone's cells would clearly be more.

    Returns
    -------
    list of int or None
        Sorted cell numbers, a superset of the cells the cone meets; None when
        the cone would need more than about ``max_cells`` cells at this order.
    """
    n = 1 << order
    r = radius_deg * _DEG + _PAD_RAD
    if r >= _HALF_PI:
        return None
    d = max(-90.0, min(90.0, dec)) * _DEG
    z0 = math.sin(d)
    z_lo = -1.0 if d - r <= -_HALF_PI else math.sin(d - r)
    z_hi = 1.0 if d + r >= _HALF_PI else math.sin(d + r)
    pole = z_lo == -1.0 or z_hi == 1.0
    t = (ra % 360.0) / 90.0
    cos_r = math.cos(r)
    # the latitude at which the cone is widest in longitude
    z_wide = z0 / cos_r
    cos_d = math.sqrt(max(0.0, 1.0 - z0 * z0))
    if not pole and r * n < 0.5:
        few = _few_cells(order, n, t, z_lo, z_hi, r, cos_d)
        if few is not None:
            return few
    # a rough count of the cells first: the cone's area in cells, doubled
    if 2.0 * (r * n * 1.2) ** 2 * math.pi > 2.0 * max_cells:
        return None
    shape = None if pole else (z0, cos_r, cos_d, z_wide)
    cells: set[int] = set()
    if z_lo < _TWO_THIRDS and z_hi > -_TWO_THIRDS:
        _belt_rows(cells, order, t, max(z_lo, -_TWO_THIRDS), min(z_hi, _TWO_THIRDS),
                   shape)
    if z_hi > _TWO_THIRDS:
        _cap_rows(cells, order, True, t, max(z_lo, _TWO_THIRDS), z_hi, shape)
    if z_lo < -_TWO_THIRDS:
        _cap_rows(cells, order, False, t, z_lo, min(z_hi, -_TWO_THIRDS), shape)
    if len(cells) > 2 * max_cells:
        return None
    return sorted(cells)
