"""SIA 2.0: the select over ``ivoa.obscore`` (SIA 2.0 §2.1, §3.1)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, false, func, or_, select
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from siap.sia2.params import SIA2Query
from vo_archive.dali.params import Interval
from vo_archive.obscore import OBSCORE_COLUMNS
from vo_archive.positional import (Circle, contains_point, footprint_extent,
                                   footprint_test, range_join, region_ranges)
from vo_archive.published import obscore as o
from vo_archive.published import version
from vo_archive.sky import Region, counter_clockwise, merge_ranges
from vo_archive.votable import Field, spherical_pairs

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


def _overlaps(lo_col: ColumnElement[Any], hi_col: ColumnElement[Any],
              iv: Interval) -> ColumnElement[bool]:
    # [lo_col, hi_col] meets [iv.lo, iv.hi]; a NULL never matches (§2.1)
    conds = [lo_col.isnot(None), hi_col.isnot(None)]
    if math.isfinite(iv.hi):
        conds.append(lo_col <= iv.hi)
    if math.isfinite(iv.lo):
        conds.append(hi_col >= iv.lo)
    return and_(*conds)


def _region_test(footprint: ColumnElement[str], region: Region) -> ColumnElement[bool]:
    if isinstance(region, Circle) and region.radius == 0.0:
        return contains_point(footprint, region.ra, region.dec)
    return footprint_test(footprint, region, "&&")


def conditions(q: SIA2Query) -> list[ColumnElement[bool]]:
    """Return the non-positional conditions (each parameter's values ORed)."""
    conds: list[ColumnElement[bool]] = [o.c.dataproduct_type.in_(IMAGE_TYPES)]
    for name, (lo, hi) in _RANGE_COLUMNS.items():
        values = q.range(name)
        if values:
            conds.append(or_(*(_overlaps(o.c[lo], o.c[hi], iv) for iv in values)))
    ids = q.string("ID")
    if ids:
        conds.append(func.lower(o.c.obs_publisher_did).in_([i.lower() for i in ids]))
    for name, col in _STRING_COLUMNS.items():
        values = q.string(name)
        if values:
            conds.append(o.c[col].in_(values))
    pols = q.string("POL")
    if pols:
        conds.append(or_(*(o.c.pol_states.like(f"%/{p}/%") for p in pols)))
    if q.calib:
        conds.append(o.c.calib_level.in_(q.calib))
    return conds


def build_select(q: SIA2Query, conn: Connection) -> Select[Any]:
    """Return the SIA 2.0 select: HEALPix ranges of the POS regions (widened by
    the largest footprint), the exact footprint overlap, then the other
    constraints."""
    cols = [o.c[c.name] for c in OBSCORE_COLUMNS]
    conds = conditions(q)
    source: Any = o
    if q.pos:
        # The candidates come first, from the HEALPix ranges and the exact
        # footprint test (a MATERIALIZED CTE: the planner would otherwise start
        # from the ObsCore view's CASE filters and scan products)
        v = version.alias("hv")
        widen = footprint_extent(conn)
        ranges = merge_ranges([r for region in q.pos
                               for r in region_ranges(conn, region, widen)])
        cand = (select(v.c.product_id, v.c.version_no)
                .select_from(range_join(v, v.c.healpix29, ranges))
                .where(v.c.is_current,
                       or_(*(_region_test(v.c.footprint, r) for r in q.pos)))
                .cte("candidates").prefix_with("MATERIALIZED"))
        if not ranges:
            conds.append(false())
        source = cand.join(o, (o.c.pessto_product_id == cand.c.product_id)
                           & (o.c.pessto_version == cand.c.version_no))
    return (select(*cols).select_from(source).where(*conds)
            .order_by(o.c.t_min, o.c.pessto_product_id).limit(q.maxrec + 1))


def row_converter(absolute: Callable[[str], str]
                  ) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """Return the converter of a database row to a result row (absolute URL, DALI
    polygon)."""
    names = [c.name for c in OBSCORE_COLUMNS]
    i_url, i_region = names.index("access_url"), names.index("s_region")

    def convert(row: Sequence[Any]) -> Sequence[Any]:
        out = list(row)
        out[i_url] = absolute(out[i_url])
        pairs = spherical_pairs(out[i_region])
        out[i_region] = counter_clockwise(pairs) if pairs else None
        return out

    return convert
