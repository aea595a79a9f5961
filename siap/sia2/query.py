"""SIA 2.0: the select over ``ivoa.obscore`` (SIA 2.0 §2.1, §3.1)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, any_, bindparam, case, false, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from siap.sia2.params import SIA2Query
from vo_archive.vo.obscore import OBSCORE_COLUMNS
from vo_archive.vo.positional import (
    BoundRegion,
    bind_region,
    footprint_extent,
    range_join,
    region_values,
)
from vo_archive.vo.published import obscore as o
from vo_archive.vo.published import product, version
from vo_archive.vo.sky import counter_clockwise
from vo_archive.vo.statements import (
    IntervalShape,
    Scalar,
    ShapedQuery,
    bind_intervals,
    one_of,
    overlap_test,
)
from vo_archive.vo.votable import Field, spherical_pairs

#: Data product types SIA serves; spectra go to SSA and ObsTAP (SIA 2.0 §2.1.13).
IMAGE_TYPES = ("image", "cube")
_RANGE_COLUMNS: dict[str, tuple[str, str]] = {
    "BAND": ("em_min", "em_max"), "TIME": ("t_min", "t_max"),
    "FOV": ("s_fov", "s_fov"), "SPATRES": ("s_resolution", "s_resolution"),
    "EXPTIME": ("t_exptime", "t_exptime"), "TIMERES": ("t_resolution", "t_resolution"),
    "SPECRP": ("em_res_power", "em_res_power"),
}
_STRING_COLUMNS = {"COLLECTION": "obs_collection", "FACILITY": "facility_name",
                   "INSTRUMENT": "instrument_name", "DPTYPE": "dataproduct_type",
                   "TARGET": "target_name", "FORMAT": "access_format"}


def fields() -> list[Field]:
    """Return the result FIELDs: every ObsCore column (§3.1), the DID with an ID."""
    return [c.field("obs_publisher_did" if c.name == "obs_publisher_did" else None)
            for c in OBSCORE_COLUMNS]


@dataclass(frozen=True, slots=True)
class SIA2Shape:
    """What a SIA 2.0 query's select is made of (its values are bound)."""

    regions: tuple[BoundRegion, ...]
    ranges: tuple[tuple[str, IntervalShape], ...]
    strings: tuple[str, ...]
    ids: bool
    pol: bool
    calib: bool


def _conditions(shape: SIA2Shape) -> list[ColumnElement[bool]]:
    # the non-positional conditions, each parameter's values ORed
    conds: list[ColumnElement[bool]] = [
        one_of(o.c.dataproduct_type, "image_types", value=IMAGE_TYPES)]
    for name, intervals in shape.ranges:
        lo, hi = _RANGE_COLUMNS[name]
        conds.append(overlap_test(o.c[lo], o.c[hi], name.lower(), intervals))
    if shape.ids:
        conds.append(one_of(func.lower(o.c.obs_publisher_did), "id"))
    for name in shape.strings:
        conds.append(one_of(o.c[_STRING_COLUMNS[name]], name.lower()))
    if shape.pol:
        conds.append(o.c.pol_states.like(any_(bindparam("pol", type_=ARRAY(String)))))
    if shape.calib:
        conds.append(one_of(o.c.calib_level, "calib", Integer))
    return conds


def _build(shape: SIA2Shape) -> Select[Any]:
    cols = [o.c[c.name] for c in OBSCORE_COLUMNS]
    conds = _conditions(shape)
    source: Any = o
    if shape.regions:
        # The candidates come first: the current versions in the HEALPix ranges
        # (a MATERIALIZED CTE: the generic plan would otherwise start from the
        # products), then the images among them whose footprint meets a region
        v = version.alias("hv")
        prod = product.alias("hp")
        near = (select(v.c.product_id, v.c.version_no, v.c.footprint)
                .select_from(range_join(v, v.c.healpix29, None,
                                        regions=len(shape.regions)))
                .where(v.c.is_current).cte("near").prefix_with("MATERIALIZED"))
        tests = or_(*(r.footprint_test(near.c.footprint) for r in shape.regions))
        cand = (select(near.c.product_id, near.c.version_no)
                .select_from(near.join(prod, prod.c.product_id == near.c.product_id))
                .where(prod.c.mode == "imaging",
                       # names both tables, so it runs after the join: the
                       # costly footprint test (~12 us a row) on images only
                       case((prod.c.mode == "imaging", tests), else_=false()))
                .cte("candidates").prefix_with("MATERIALIZED"))
        source = cand.join(o, (o.c.pessto_product_id == cand.c.product_id)
                           & (o.c.pessto_version == cand.c.version_no))
    return (select(*cols).select_from(source).where(*conds)
            .order_by(o.c.t_min, o.c.pessto_product_id)
            .limit(bindparam("limit", type_=Integer)))


def build_query(q: SIA2Query) -> ShapedQuery:
    """Return the SIA 2.0 query.

    HEALPix ranges of the POS regions (widened by the largest footprint), the
    exact footprint overlap, then the other constraints.
    """
    values: dict[str, Any] = {"limit": q.maxrec + 1}
    regions = []
    for i, region in enumerate(q.pos):
        bound, bound_values = bind_region(region, f"pos{i}", footprints=True)
        regions.append(bound)
        values.update(bound_values)
    ranges = []
    for name in _RANGE_COLUMNS:
        if q.range(name):
            interval_shape, interval_values = bind_intervals(name.lower(),
                                                             q.range(name))
            ranges.append((name, interval_shape))
            values.update(interval_values)
    strings = tuple(name for name in _STRING_COLUMNS if q.string(name))
    values.update({name.lower(): list(q.string(name)) for name in strings})
    if q.string("ID"):
        values["id"] = [i.lower() for i in q.string("ID")]
    if q.string("POL"):
        values["pol"] = [f"%/{p}/%" for p in q.string("POL")]
    if q.calib:
        values["calib"] = list(q.calib)
    shape = SIA2Shape(tuple(regions), tuple(ranges), strings, bool(q.string("ID")),
                      bool(q.string("POL")), bool(q.calib))

    def resolve(scalar: Scalar) -> dict[str, Any]:
        if not q.pos:
            return values
        return {**values, **region_values(scalar, q.pos, footprint_extent(scalar))}

    return ShapedQuery(("sia2", shape), functools.partial(_build, shape), resolve,
                       from_ranges=bool(q.pos))


def row_converter(absolute: Callable[[str], str]
                  ) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """Return the converter of a database row to a result row.

    It makes the access URL absolute and the footprint a DALI polygon.
    """
    names = [c.name for c in OBSCORE_COLUMNS]
    i_url, i_region = names.index("access_url"), names.index("s_region")

    def convert(row: Sequence[Any]) -> Sequence[Any]:
        out = list(row)
        out[i_url] = absolute(out[i_url])
        pairs = spherical_pairs(out[i_region])
        out[i_region] = counter_clockwise(pairs) if pairs else None
        return out

    return convert
