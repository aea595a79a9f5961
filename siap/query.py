"""SIA 1.0: result columns (the ``VOX:`` UCDs, SIA 1.0 §4.2) and the select."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

from sqlalchemy import Float, Integer, bindparam, case, cast, false, select
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from siap.params import Intersect, Rendering, SIA1Query
from vo_archive.access import visible
from vo_archive.vo.positional import (
    BoundRegion,
    bind_region,
    footprint_extent,
    range_join,
    region_values,
)
from vo_archive.vo.published import product as p
from vo_archive.vo.published import version as v
from vo_archive.vo.sky import Circle
from vo_archive.vo.statements import Scalar, ShapedQuery
from vo_archive.vo.votable import Field
from vo_archive.web.previews import preview_path, thumbnail_factor


def _f(name: str, datatype: str, ucd: str, description: str, unit: str | None = None,
       arraysize: str | None = None, id_: str | None = None) -> Field:
    return Field(name, datatype, arraysize, unit, ucd, None, None, description, id_)


FIELDS: tuple[Field, ...] = (
    _f("title", "char", "VOX:Image_Title", "File name", arraysize="*"),
    _f("ra", "double", "POS_EQ_RA_MAIN", "Right ascension of the image centre", "deg"),
    _f("dec", "double", "POS_EQ_DEC_MAIN", "Declination of the image centre", "deg"),
    _f("instrument", "char", "INST_ID", "Instrument", arraysize="*"),
    _f("mjd_obs", "double", "VOX:Image_MJDateObs", "Start of the exposure (MJD)", "d"),
    _f("naxes", "int", "VOX:Image_Naxes", "Number of image axes"),
    _f("naxis", "int", "VOX:Image_Naxis", "Image size in pixels", arraysize="2"),
    _f("scale", "double", "VOX:Image_Scale", "Pixel size", "deg", "2"),
    _f("format", "char", "VOX:Image_Format", "MIME type of the file", arraysize="*"),
    _f("coord_frame", "char", "VOX:STC_CoordRefFrame", "Coordinate frame",
       arraysize="*"),
    _f("coord_equinox", "double", "VOX:STC_CoordEquinox", "Equinox", "yr"),
    _f("projection", "char", "VOX:WCS_CoordProjection", "WCS projection",
       arraysize="3"),
    _f("crpix", "double", "VOX:WCS_CoordRefPixel", "WCS reference pixel",
       arraysize="2"),
    _f("crval", "double", "VOX:WCS_CoordRefValue", "WCS reference position", "deg",
       "2"),
    _f("cd", "double", "VOX:WCS_CDMatrix", "WCS CD matrix", "deg", "4"),
    _f("bandpass", "char", "VOX:BandPass_ID", "Filter", arraysize="*"),
    _f("bandpass_unit", "char", "VOX:BandPass_Unit", "Unit of the band limits",
       arraysize="*"),
    _f("bandpass_ref", "double", "VOX:BandPass_RefValue", "Central wavelength", "m"),
    _f("bandpass_hi", "double", "VOX:BandPass_HiLimit", "Longest wavelength", "m"),
    _f("bandpass_lo", "double", "VOX:BandPass_LoLimit", "Shortest wavelength", "m"),
    _f("pixflags", "char", "VOX:Image_PixFlags", "C: pixels are the archived ones",
       arraysize="*"),
    _f("filesize", "long", "VOX:Image_FileSize", "Size of the file", "byte"),
    _f("publisher_did", "char", "meta.ref.ivoid", "IVOA dataset identifier",
       arraysize="*", id_="publisher_did"),
    _f("accref", "char", "VOX:Image_AccessReference", "URL of the image",
       arraysize="*"),
)


def _card(name: str) -> ColumnElement[Any]:
    return cast(v.c.header[name].as_float(), Float)


def _build(region: BoundRegion, intersect: Intersect | None) -> Select[Any]:
    cols = [v.c.filename, v.c.ra, v.c.dec, p.c.instrument, v.c.mjd_obs, v.c.naxis1,
            v.c.naxis2, _card("CRPIX1"), _card("CRPIX2"), _card("CD1_1"),
            _card("CD1_2"), _card("CD2_1"), _card("CD2_2"), v.c.filter, v.c.em_min,
            v.c.em_max, v.c.file_size, v.c.product_id, v.c.version_no, v.c.pixscale]
    # the current versions in the HEALPix ranges come first (a MATERIALIZED
    # CTE: the generic plan would otherwise start from the products)
    hv = v.alias("hv")
    near = (select(hv.c.version_id, hv.c.product_id, hv.c.ra, hv.c.dec, hv.c.footprint)
            .select_from(range_join(hv, hv.c.healpix29, None))
            .where(hv.c.is_current, hv.c.footprint.isnot(None))
            .cte("near").prefix_with("MATERIALIZED"))
    if intersect is Intersect.CENTER:
        test = region.contains(near.c.ra, near.c.dec)
    else:
        op = {None: "@>", Intersect.OVERLAPS: "&&", Intersect.COVERS: "@>",
              Intersect.ENCLOSED: "<@"}[intersect]
        test = region.footprint_test(near.c.footprint, op)
    source = near.join(p, p.c.product_id == near.c.product_id).join(
        v, v.c.version_id == near.c.version_id)
    conds = [p.c.mode == "imaging", visible(p.c.release_date),
             # names the product, so it runs after the join: the costly
             # footprint test (~12 us a row) on visible images only
             case((p.c.mode == "imaging", test), else_=false())]
    return (select(*cols).select_from(source).where(*conds)
            .order_by(v.c.mjd_obs, v.c.product_id)
            .limit(bindparam("limit", type_=Integer)))


def build_query(q: SIA1Query) -> ShapedQuery:
    """Return the SIA 1.0 query over the visible current images.

    The HEALPix ranges of the region widened by the largest footprint, then the
    exact test of INTERSECT (a point in the footprint without SIZE).
    """
    region = q.region if q.region is not None else Circle(q.ra, q.dec, 0.0)
    intersect = None if q.region is None else q.intersect
    bound, bound_values = bind_region(region, "pos",
                                      footprints=intersect is not Intersect.CENTER)

    def values(scalar: Scalar) -> dict[str, Any]:
        ranges = region_values(scalar, [region], footprint_extent(scalar))
        return {**bound_values, **ranges, "limit": q.maxrec + 1}

    return ShapedQuery(("sia1", bound, intersect),
                       functools.partial(_build, bound, intersect), values,
                       from_ranges=True)


def row_expander(q: SIA1Query, absolute: Callable[[str], str], authority: str
                 ) -> Callable[[Iterator[Sequence[Any]]], Iterator[Sequence[Any]]]:
    """Return a function turning database rows into result rows, one per rendering."""

    def expand(rows: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        for (filename, ra, dec, inst, mjd, n1, n2, crpix1, crpix2, cd11, cd12, cd21,
             cd22, filt, em_min, em_max, size, pid, vno, pixscale) in rows:
            did = f"{authority.rstrip('/')}/pessto?{pid}/v{vno}"
            scale = [abs(cd11 or 0.0) or (pixscale or 0.0) / 3600.0,
                     abs(cd22 or 0.0) or (pixscale or 0.0) / 3600.0]
            ref = None if em_min is None or em_max is None else (em_min + em_max) / 2
            for r in q.renderings:
                f = 1.0
                if r is Rendering.PNG:
                    f = thumbnail_factor(n1, n2)
                    url = absolute(preview_path(pid, vno))
                elif r is Rendering.DATALINK:
                    url = absolute("/datalink/links?ID=" + quote(did, safe=""))
                else:
                    url = absolute(f"/products/{pid}/versions/{vno}")
                naxis = [max(1, round(n1 * f)), max(1, round(n2 * f))]
                yield [filename, ra, dec, inst, mjd, 2, naxis,
                       [s / f for s in scale], r.value, "ICRS", 2000.0, "TAN",
                       None if crpix1 is None else [(crpix1 - 0.5) * f + 0.5,
                                                    (crpix2 - 0.5) * f + 0.5],
                       [ra, dec],
                       None if cd11 is None else [cd11 / f, (cd12 or 0.0) / f,
                                                  (cd21 or 0.0) / f, cd22 / f],
                       filt, "m", ref, em_max, em_min,
                       "C" if r is Rendering.FITS else "X", size if r is
                       Rendering.FITS else None, did, url]

    return expand
