"""Positional queries shared by every DAL service.

A region (cone, polygon, coordinate range) becomes a short list of order-29
HEALPix index ranges covering its bounding circle. Where the database has the
archive's extension ``vo_archive_cone`` (``schema/ext``), the server makes
them, ``archive.healpix_cone_ranges(ra, dec, radius, rows)``, from the circle
alone; elsewhere :func:`vo_archive.vo.sky.covering_ranges` makes the same ranges
here and they are joined as ``unnest(lo[], hi[])``. Either way every region,
whatever its number of ranges, is one statement shape (one cached plan), each
range is one B-tree descent on ``healpix29``, and an exact pgSphere test then
keeps the true matches. The exact tests are written so that the planner cannot answer
them from the GiST indexes instead (``coalesce``): the B-tree on the HEALPix
index is the one access path, and ``tests/db/test_positional.py`` proves with
EXPLAIN that it is used and that the results equal a brute-force scan.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    String,
    bindparam,
    cast,
    column,
    func,
    literal_column,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause
from sqlalchemy.types import UserDefinedType

from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.sky import (
    Box,
    Circle,
    Polygon,
    Region,
    bounding_circle,
    covering_ranges,
    merge_ranges,
)

__all__ = [
    "BoundRegion",
    "Box",
    "Circle",
    "Polygon",
    "Region",
    "RegionKind",
    "bind_region",
    "cover_in_server",
    "database_covers",
    "detect_cover",
    "range_join",
    "range_values",
    "region_values",
    "set_cover_in_server",
    "table_rows",
]


class SphereType(UserDefinedType[str]):
    """A pgSphere type (values cross the wire as pgSphere text)."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **_: object) -> str:
        """Return the SQL type name."""
        return self.name


SPOLY = SphereType("spoly")


#: Whether the database makes the covering ranges (None: not yet asked).
_cover_in_server: bool | None = None
_COVER_FUNCTION = "archive.healpix_cone_ranges(float8, float8, float8, float8)"


def database_covers(scalar: Callable[[str], Any]) -> bool:
    """Return whether the database has the extension's covering function."""
    return bool(scalar(f"SELECT to_regprocedure('{_COVER_FUNCTION}') IS NOT NULL"))


def detect_cover(scalar: Callable[[str], Any]) -> None:
    """Ask the database, once per process, whether it makes covering ranges."""
    global _cover_in_server
    if _cover_in_server is None:
        _cover_in_server = database_covers(scalar)


def cover_in_server() -> bool:
    """Return whether statements take their ranges from the database."""
    return bool(_cover_in_server)


def set_cover_in_server(value: bool | None) -> None:
    """Choose where ranges are made (None: ask the database again); for tests."""
    global _cover_in_server
    _cover_in_server = value


def range_join(source: FromClause, healpix: ColumnElement[int],
               ranges: list[tuple[int, int]] | None, name: str = "hpx",
               regions: int = 1) -> FromClause:
    """Join ``source`` to the index ranges: the B-tree range scan.

    Parameters
    ----------
    source
        The table or view to search.
    healpix
        Its order-29 NESTED HEALPix column (B-tree indexed).
    ranges
        ``[lo, hi)`` ranges covering the region; None leaves them open, as
        parameters whose values :func:`region_values` gives: the bounding
        circle (``{name}_ra``, ``_dec``, ``_r`` in degrees, ``_rows``) when
        the database makes the ranges of a single region, else the ranges
        themselves (``{name}_lo``, ``{name}_hi``).
    name
        Alias of the ranges in the statement.
    regions
        How many regions the open ranges cover (the server covers one).
    """
    if ranges is None and regions == 1 and cover_in_server():
        made = func.archive.healpix_cone_ranges(
            *(bindparam(f"{name}_{p}", type_=Float) for p in ("ra", "dec", "r", "rows"))
        ).table_valued(column("lo", BigInteger), column("hi", BigInteger)
                       ).render_derived(name=name)
        return made.join(source, (healpix >= made.c.lo) & (healpix < made.c.hi))
    if ranges is None:
        lo = bindparam(f"{name}_lo", type_=ARRAY(BigInteger))
        hi = bindparam(f"{name}_hi", type_=ARRAY(BigInteger))
    else:
        lo = bindparam(f"{name}_lo", [r[0] for r in ranges], type_=ARRAY(BigInteger))
        hi = bindparam(f"{name}_hi", [r[1] for r in ranges], type_=ARRAY(BigInteger))
    rng = func.unnest(lo, hi).table_valued(
        column("lo", BigInteger), column("hi", BigInteger)).render_derived(name=name)
    return rng.join(source, (healpix >= rng.c.lo) & (healpix < rng.c.hi))


def range_values(
    ranges: list[tuple[int, int]], name: str = "hpx"
) -> dict[str, list[int]]:
    """Return the values of the open ranges of :func:`range_join`."""
    return {f"{name}_lo": [r[0] for r in ranges], f"{name}_hi": [r[1] for r in ranges]}


def _exact(test: ColumnElement[bool]) -> ColumnElement[bool]:
    # coalesce() keeps the planner from answering the test from a GiST index:
    # the candidates come from the HEALPix ranges, this only filters them.
    return func.coalesce(test, literal_column("false"))


def _float(name: str) -> ColumnElement[float]:
    return bindparam(name, type_=Float)


def _point_of(
    ra: ColumnElement[float], dec: ColumnElement[float]
) -> ColumnElement[str]:
    return func.spoint(func.radians(ra), func.radians(dec))


class RegionKind(enum.Enum):
    """How a region enters a statement (its values are bound parameters)."""

    POINT = "point"            # spoint: {name}_ra, {name}_dec
    CIRCLE = "circle"          # scircle: {name}_ra, {name}_dec, {name}_r
    POLYGON = "polygon"        # spoly: {name}_poly (pgSphere text)
    BOX = "box"                # sbox: {name}_ra1, {name}_dec1, {name}_ra2, {name}_dec2
    OUTSIDE = "outside"        # a cone wider than a hemisphere, as its complement
    WHOLE_SKY = "whole sky"    # a cone of 180°


@dataclass(frozen=True, slots=True)
class BoundRegion:
    """A region in a statement.

    Its kind is the statement's, its values are bound parameters named after
    ``name`` (:func:`bind_region` gives both).

    Angles are bound in radians, as pgSphere takes them.
    """

    name: str
    kind: RegionKind

    def _centre(self) -> ColumnElement[str]:
        return func.spoint(_float(f"{self.name}_ra"),
                           _float(f"{self.name}_dec"))

    def sky_value(self) -> ColumnElement[str]:
        """Return the pgSphere value (spoint, scircle, spoly, sbox).

        An OUTSIDE region gives its complement, the cone around the antipode.
        """
        n = self.name
        if self.kind is RegionKind.POINT:
            return self._centre()
        if self.kind in (RegionKind.CIRCLE, RegionKind.OUTSIDE):
            return func.scircle(self._centre(),
                                _float(f"{n}_r"))
        if self.kind is RegionKind.POLYGON:
            return cast(bindparam(f"{n}_poly", type_=String), SPOLY)
        if self.kind is RegionKind.BOX:
            return func.sbox(
                func.spoint(_float(f"{n}_ra1"), _float(f"{n}_dec1")),
                func.spoint(_float(f"{n}_ra2"), _float(f"{n}_dec2")))
        raise ValueError(f"a {self.kind.value} region has no pgSphere value")

    def distance(self, ra: ColumnElement[float], dec: ColumnElement[float]
                 ) -> ColumnElement[float]:
        """Return the distance (degrees) from the centre of a cone or point.

        ``ra`` and ``dec`` are in degrees.
        """
        return func.degrees(
            _point_of(ra, dec).op("<->")(self._centre()))

    def contains(self, ra: ColumnElement[float], dec: ColumnElement[float]
                 ) -> ColumnElement[bool]:
        """Return the exact test that the position (ra, dec) in degrees is inside."""
        here = _point_of(ra, dec)
        if self.kind is RegionKind.CIRCLE:
            return _exact(here.op("<->")(self._centre()) <= _float(f"{self.name}_r"))
        if self.kind is RegionKind.POINT:
            return _exact(here.op("=")(self._centre()))
        return _exact(here.op("<@")(self.sky_value()))

    def footprint_test(self, footprint: ColumnElement[str], predicate: str = "&&"
                       ) -> ColumnElement[bool]:
        """Return the exact test of a footprint (spoly) against the region.

        ``predicate`` is pgSphere's ``&&`` (overlaps), ``@>`` (footprint
        contains the region) or ``<@`` (footprint inside the region). pgSphere
        circles stop at a radius of 90°: a wider cone (OUTSIDE) is tested
        through its complement, the cone of radius 180° - r around the antipode.
        """
        if self.kind is RegionKind.WHOLE_SKY:
            return literal_column("true" if predicate != "@>" else "false")
        if self.kind is RegionKind.OUTSIDE:
            rest = self.sky_value()
            if predicate == "&&":  # overlaps unless wholly inside the complement
                return ~_exact(footprint.op("<@")(rest))
            if predicate == "<@":  # inside unless it touches the complement
                return ~_exact(footprint.op("&&")(rest))
            return literal_column("false")  # no footprint holds such a cone
        if self.kind is RegionKind.POINT:
            return _exact(footprint.op("@>")(self.sky_value()))
        return _exact(footprint.op(predicate)(self.sky_value()))


def bind_region(region: Region, name: str, footprints: bool = False
                ) -> tuple[BoundRegion, dict[str, Any]]:
    """Return how ``region`` enters a statement and the values of its parameters.

    Parameters
    ----------
    region
        The region (a circle of radius 0 is a point).
    name
        Prefix of the parameter names.
    footprints
        Whether footprints are tested against it (a cone wider than a
        hemisphere is then bound as its complement); positions are tested by
        their distance from a cone's centre, whatever its radius.

    Raises
    ------
    UsageFault
        For a polygon that does not fit in a hemisphere.
    """
    if isinstance(region, Circle):
        ra, dec, r = region.ra % 360.0, region.dec, region.radius
        kind = RegionKind.POINT if r == 0.0 else RegionKind.CIRCLE
        if footprints and r >= 180.0:
            return BoundRegion(name, RegionKind.WHOLE_SKY), {}
        if footprints and r > 90.0:
            ra, dec, r, kind = (ra + 180.0) % 360.0, -dec, 180.0 - r, RegionKind.OUTSIDE
        values = {f"{name}_ra": math.radians(ra), f"{name}_dec": math.radians(dec)}
        if kind is not RegionKind.POINT:
            values[f"{name}_r"] = math.radians(r)
        return BoundRegion(name, kind), values
    if isinstance(region, Polygon):
        if bounding_circle(region).radius >= 90.0:
            raise UsageFault("a polygon must fit in a hemisphere", "POS")
        text = "{" + ",".join(f"({a!r}d,{d!r}d)" for a, d in region.vertices) + "}"
        return BoundRegion(name, RegionKind.POLYGON), {f"{name}_poly": text}
    hi_ra = region.ra_min + 360.0 if region.full_ra else region.ra_max % 360.0
    return BoundRegion(name, RegionKind.BOX), {
        f"{name}_ra1": math.radians(region.ra_min % 360.0),
        f"{name}_dec1": math.radians(region.dec_min),
        f"{name}_ra2": math.radians(hi_ra),
        f"{name}_dec2": math.radians(region.dec_max),
    }


_rows_cache: dict[str, tuple[float, int]] = {}
_rows_lock = threading.Lock()


def table_rows(scalar: Callable[[str], Any], table: str = "archive.version",
               ttl: float = 300.0) -> int:
    """Return the planner's row count of an indexed table (cached ``ttl`` seconds).

    The count chooses the coarse HEALPix order of the covering ranges; it need
    not be exact. ``scalar`` runs a one-value query on the request's connection.
    """
    now = time.monotonic()
    with _rows_lock:
        hit = _rows_cache.get(table)
        if hit and now - hit[0] < ttl:
            return hit[1]
    # table is a name from our code (default archive.version), never a request value
    sql = ("SELECT greatest(reltuples, 0)::bigint FROM pg_class "  # noqa: S608
           f"WHERE oid = '{table}'::regclass")
    rows = scalar(sql)
    with _rows_lock:
        _rows_cache[table] = (now, max(int(rows), 1000))
    return max(int(rows), 1000)


def region_values(scalar: Callable[[str], Any], regions: Sequence[Region],
                  widen: float = 0.0, name: str = "hpx", rows: int | None = None
                  ) -> dict[str, Any]:
    """Return the values of :func:`range_join`'s open ranges for ``regions``.

    Parameters
    ----------
    scalar
        Runs a one-value query on the request's connection.
    regions
        The regions the statement covers (``range_join(..., regions=len)``).
    widen
        Degrees to add to each bounding circle's radius.
    name
        Alias of the ranges in the statement.
    rows
        Size of the searched table (default: the archive's versions, asked
        through ``scalar``), which chooses the cells' order.
    """
    rows = table_rows(scalar) if rows is None else rows
    if len(regions) == 1 and cover_in_server():
        c = bounding_circle(regions[0])
        return {f"{name}_ra": c.ra, f"{name}_dec": c.dec,
                f"{name}_r": min(180.0, c.radius + widen), f"{name}_rows": float(rows)}
    ranges = merge_ranges([r for region in regions
                           for r in covering_ranges(region, widen, rows=rows)])
    return range_values(ranges, name)


def footprint_extent(scalar: Callable[[str], Any]) -> float:
    """Return the largest footprint diameter in the archive (degrees).

    Every footprint lies within this distance of its product's position, so a
    region widened by it finds, through the centres' HEALPix index, every
    footprint that overlaps the region. Index-only (``version_fov``); asked at
    each request, on its connection (``scalar``), so that a product ingested a
    moment ago is found.
    """
    value = scalar("SELECT max(fov) FROM archive.version")
    return float(value or 0.0)
