"""SCS 1.03: the result columns and the select over ``pessto.products``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, bindparam, select
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from conesearch.params import ConeQuery
from vo_archive.vo.positional import (
    BoundRegion,
    Circle,
    RegionKind,
    bind_region,
    range_join,
    region_values,
)
from vo_archive.vo.published import products as p
from vo_archive.vo.published import version
from vo_archive.vo.statements import Scalar, ShapedQuery
from vo_archive.vo.votable import Field


@dataclass(frozen=True, slots=True)
class OutputColumn:
    """A result column: its FIELD, its SQL expression, and the least VERB showing it."""

    field: Field
    expr: Callable[[], ColumnElement[Any]]
    verb: int


#: The cone of the request, as bound parameters.
CONE = BoundRegion("cone", RegionKind.CIRCLE)


def _distance() -> ColumnElement[Any]:
    return CONE.distance(p.c.ra, p.c.dec)


def _c(name: str, datatype: str, expr: Callable[[], ColumnElement[Any]],
       verb: int, ucd: str, description: str, unit: str | None = None,
       arraysize: str | None = None, xtype: str | None = None,
       id_: str | None = None) -> OutputColumn:
    return OutputColumn(Field(name, datatype, arraysize, unit, ucd, None, xtype,
                              description, id_), expr, verb)


COLUMNS: tuple[OutputColumn, ...] = (
    _c("obs_publisher_did", "char", lambda: p.c.publisher_did, 1, "ID_MAIN",
       "IVOA identifier of the dataset (file version)", arraysize="*",
       id_="obs_publisher_did"),
    _c("ra", "double", lambda: p.c.ra, 1, "POS_EQ_RA_MAIN",
       "Right ascension (ICRS) of the target or field centre", "deg"),
    _c("dec", "double", lambda: p.c.dec, 1, "POS_EQ_DEC_MAIN",
       "Declination (ICRS) of the target or field centre", "deg"),
    _c("access_url", "char", lambda: p.c.access_url, 1, "meta.ref.url",
       "URL of the FITS file", arraysize="*"),
    _c("distance", "double", _distance, 2, "pos.angDistance",
       "Distance from the cone centre", "deg"),
    _c("object", "char", lambda: p.c.object, 2, "meta.id;src",
       "Name of the observed object", arraysize="*"),
    _c("instrument", "char", lambda: p.c.instrument, 2, "meta.id;instr",
       "Instrument (EFOSC or SOFI)", arraysize="*"),
    _c("mode", "char", lambda: p.c.mode, 2, "meta.code.class",
       "imaging or spectroscopy", arraysize="*"),
    _c("product_type", "char", lambda: p.c.product_type, 2, "meta.code.class",
       "PESSTO product type", arraysize="*"),
    _c("filename", "char", lambda: p.c.filename, 2, "meta.id;meta.file",
       "File name", arraysize="*"),
    _c("date_obs", "char", lambda: p.c.date_obs, 2, "time.start;obs.exposure",
       "Start of the exposure (UTC, ISO 8601)", arraysize="*"),
    _c("mjd_obs", "double", lambda: p.c.mjd_obs, 2, "time.start;obs.exposure",
       "Start of the exposure (MJD, UTC)", "d"),
    _c("exptime", "double", lambda: p.c.exptime, 2, "time.duration;obs.exposure",
       "Exposure time", "s"),
    _c("filter", "char", lambda: p.c.filter, 2, "meta.id;instr.filter",
       "Filter", arraysize="*"),
    _c("disperser", "char", lambda: p.c.disperser, 2, "instr.setup",
       "Grism", arraysize="*"),
    _c("size", "double", lambda: p.c.fov, 3, "OBS_ANG-SIZE",
       "Diameter of the covered region", "deg"),
    _c("level", "char", lambda: p.c.level, 3, "meta.code",
       "Processing level", arraysize="*"),
    _c("category", "char", lambda: p.c.category, 3, "meta.code",
       "science or calib", arraysize="*"),
    _c("em_min", "double", lambda: p.c.em_min, 3, "em.wl;stat.min",
       "Shortest wavelength covered", "m"),
    _c("em_max", "double", lambda: p.c.em_max, 3, "em.wl;stat.max",
       "Longest wavelength covered", "m"),
    _c("run", "char", lambda: p.c.run_name, 3, "meta.id",
       "Observing run", arraysize="*"),
    _c("prog_id", "char", lambda: p.c.prog_id, 3, "meta.id;obs.proposal",
       "ESO programme and run", arraysize="*"),
    _c("file_size", "long", lambda: p.c.file_size, 3, "phys.size;meta.file",
       "File size", "byte"),
    _c("version_no", "int", lambda: p.c.version_no, 3, "meta.version",
       "Version of the product"),
    _c("release_date", "char", lambda: p.c.release_date, 3, "time.release",
       "Date the product became public (ISO 8601)", arraysize="*"),
)


def columns_for(verb: int) -> list[OutputColumn]:
    """Return the result columns at a verbosity (SCS 1.03 §2 VERB)."""
    return [c for c in COLUMNS if c.verb <= verb]


def fields_for(verb: int) -> list[Field]:
    """Return the FIELDs of the result at a verbosity."""
    return [c.field for c in columns_for(verb)]


def _build(verb: int) -> Select[Any]:
    # The candidates come first, from the HEALPix ranges and the exact distance
    # test on archive.version (a MATERIALIZED CTE: the plan is generic, and its
    # estimate of the ranges' rows would otherwise start it from the products)
    cols = [c.expr().label(c.field.name) for c in columns_for(verb)]
    hv = version.alias("hv")
    cand = (select(hv.c.version_id)
            .select_from(range_join(hv, hv.c.healpix29, None))
            .where(hv.c.is_current, CONE.contains(hv.c.ra, hv.c.dec))
            .cte("candidates").prefix_with("MATERIALIZED"))
    return (select(*cols).select_from(cand.join(p, p.c.version_id == cand.c.version_id))
            .order_by(_distance(), p.c.product_id)
            .limit(bindparam("limit", type_=Integer)))


def build_query(q: ConeQuery) -> ShapedQuery:
    """Return the cone search.

    HEALPix ranges, then the exact distance test, nearest first.
    """
    cone = Circle(q.ra, q.dec, q.sr)
    bound, values = bind_region(cone, CONE.name)
    if bound != CONE:
        raise ValueError("a cone search needs a radius")

    def resolve(scalar: Scalar) -> dict[str, Any]:
        return {**values, **region_values(scalar, [cone]), "limit": q.maxrec + 1}

    return ShapedQuery(("scs", q.verb), functools.partial(_build, q.verb), resolve,
                       from_ranges=True)


def absolute_urls(positions: Sequence[int], absolute: Callable[[str], str]
                  ) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """Return a row converter making the URLs at ``positions`` absolute."""

    def convert(row: Sequence[Any]) -> Sequence[Any]:
        out = list(row)
        for i in positions:
            if out[i] is not None:
                out[i] = absolute(out[i])
        return out

    return convert

