"""Positional queries shared by every DAL service.

A region (cone, polygon, coordinate range) becomes a short list of order-29
HEALPix index ranges (:func:`vo_archive.sky.covering_ranges`); the ranges are
joined to the table as ``unnest(lo[], hi[])`` so that every region, whatever
its number of ranges, is one statement shape (one cached plan) and each range
is one B-tree descent on ``healpix29``; an exact pgSphere test then keeps the
true matches. The exact tests are written so that the planner cannot answer
them from the GiST indexes instead (``coalesce``): the B-tree on the HEALPix
index is the one access path, and ``tests/db/test_positional.py`` proves with
EXPLAIN that it is used and that the results equal a brute-force scan.
"""

from __future__ import annotations

import math
import threading
import time

from sqlalchemy import BigInteger, Connection, Float, bindparam, column, func, literal
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause
from sqlalchemy.types import UserDefinedType

from vo_archive.dali.errors import UsageFault
from vo_archive.sky import Box, Circle, Polygon, Region, bounding_circle, covering_ranges

__all__ = ["Box", "Circle", "Polygon", "Region", "contains_point", "footprint_test",
           "point_in_region", "range_join", "sky_value", "table_rows"]


class SphereType(UserDefinedType[str]):
    """A pgSphere type (values cross the wire as pgSphere text)."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **_: object) -> str:
        """Return the SQL type name."""
        return self.name


SPOLY = SphereType("spoly")


def range_join(source: FromClause, healpix: ColumnElement[int],
               ranges: list[tuple[int, int]], name: str = "hpx") -> FromClause:
    """Join ``source`` to the index ranges: the B-tree range scan.

    Parameters
    ----------
    source
        The table or view to search.
    healpix
        Its order-29 NESTED HEALPix column (B-tree indexed).
    ranges
        ``[lo, hi)`` ranges covering the region.
    name
        Alias of the ranges in the statement.
    """
    lo = bindparam(f"{name}_lo", [r[0] for r in ranges], type_=ARRAY(BigInteger))
    hi = bindparam(f"{name}_hi", [r[1] for r in ranges], type_=ARRAY(BigInteger))
    rng = func.unnest(lo, hi).table_valued(
        column("lo", BigInteger), column("hi", BigInteger)).render_derived(name=name)
    return rng.join(source, (healpix >= rng.c.lo) & (healpix < rng.c.hi))


def _spoint(ra: float, dec: float) -> ColumnElement[str]:
    return func.spoint(literal(math.radians(ra % 360.0), Float),
                       literal(math.radians(dec), Float))


def sky_value(region: Region) -> ColumnElement[str]:
    """Return the pgSphere value (scircle, spoly, sbox) of a region."""
    if isinstance(region, Circle):
        return func.scircle(_spoint(region.ra, region.dec),
                            literal(math.radians(region.radius), Float))
    if isinstance(region, Polygon):
        text = "{" + ",".join(f"({a!r}d,{d!r}d)" for a, d in region.vertices) + "}"
        return literal(text).cast(SPOLY)
    hi_ra = region.ra_min + 360.0 if region.full_ra else region.ra_max
    return func.sbox(
        func.spoint(literal(math.radians(region.ra_min % 360.0), Float),
                    literal(math.radians(region.dec_min), Float)),
        func.spoint(literal(math.radians(hi_ra) if region.full_ra
                            else math.radians(hi_ra % 360.0), Float),
                    literal(math.radians(region.dec_max), Float)),
    )


def _exact(test: ColumnElement[bool]) -> ColumnElement[bool]:
    # coalesce() keeps the planner from answering the test from a GiST index:
    # the candidates come from the HEALPix ranges, this only filters them.
    return func.coalesce(test, False)  # type: ignore[no-any-return]


def point_in_region(ra: ColumnElement[float], dec: ColumnElement[float],
                    region: Region) -> ColumnElement[bool]:
    """Return the exact test that the position (ra, dec) in degrees is in ``region``."""
    point = func.spoint(func.radians(ra), func.radians(dec))
    if isinstance(region, Circle):
        return _exact(point.op("<->")(_spoint(region.ra, region.dec))
                      <= math.radians(region.radius))
    if isinstance(region, Polygon) and bounding_circle(region).radius >= 90.0:
        raise UsageFault("a polygon must fit in a hemisphere", "POS")
    return _exact(point.op("<@")(sky_value(region)))


def footprint_test(footprint: ColumnElement[str], region: Region,
                   predicate: str = "&&") -> ColumnElement[bool]:
    """Return the exact test of a footprint (spoly) against ``region``.

    ``predicate`` is pgSphere's ``&&`` (overlaps), ``@>`` (footprint contains the
    region) or ``<@`` (footprint inside the region). pgSphere circles stop at a
    radius of 90°: a larger cone is tested through its complement, the cone of
    radius 180° - r around the antipode.
    """
    if isinstance(region, Circle) and region.radius > 90.0:
        if region.radius >= 180.0:
            return literal(predicate != "@>")
        rest = Circle((region.ra + 180.0) % 360.0, -region.dec, 180.0 - region.radius)
        if predicate == "&&":  # overlaps unless wholly inside the complement
            return ~_exact(footprint.op("<@")(sky_value(rest)))
        if predicate == "<@":  # inside unless it touches the complement
            return ~_exact(footprint.op("&&")(sky_value(rest)))
        return literal(False)  # no footprint holds a cone wider than a hemisphere
    return _exact(footprint.op(predicate)(sky_value(region)))


def contains_point(footprint: ColumnElement[str], ra: float, dec: float
                   ) -> ColumnElement[bool]:
    """Return the exact test that a footprint contains the point (ra, dec)."""
    return _exact(footprint.op("@>")(_spoint(ra, dec)))


_rows_cache: dict[str, tuple[float, int]] = {}
_rows_lock = threading.Lock()


def table_rows(conn: Connection, table: str = "archive.version",
               ttl: float = 300.0) -> int:
    """Return the planner's row count of an indexed table (cached ``ttl`` seconds).

    The count chooses the coarse HEALPix order of the covering ranges; it need
    not be exact.
    """
    now = time.monotonic()
    with _rows_lock:
        hit = _rows_cache.get(table)
        if hit and now - hit[0] < ttl:
            return hit[1]
    rows = conn.exec_driver_sql(
        "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %(t)s::regclass",
        {"t": table}).scalar_one()
    with _rows_lock:
        _rows_cache[table] = (now, max(int(rows), 1000))
    return max(int(rows), 1000)


def region_ranges(conn: Connection, region: Region, widen: float = 0.0
                  ) -> list[tuple[int, int]]:
    """Return the covering ranges of a region, sized for the archive's table."""
    return covering_ranges(region, widen, rows=table_rows(conn))


def footprint_extent(conn: Connection) -> float:
    """Return the largest footprint diameter in the archive (degrees).

    Every footprint lies within this distance of its product's position, so a
    region widened by it finds, through the centres' HEALPix index, every
    footprint that overlaps the region. Index-only (``version_fov``).
    """
    value = conn.exec_driver_sql(
        "SELECT max(fov) FROM archive.version").scalar_one_or_none()
    return float(value or 0.0)
