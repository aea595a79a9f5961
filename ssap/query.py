"""SSA 1.1 queryData: result fields (``ssa:`` utypes, SSA 1.1 §4.2) and the select."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    Boolean,
    Float,
    Integer,
    String,
    bindparam,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
)
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from ssap.params import SpectrumFormat, SSAQuery
from vo_archive.vo.positional import (
    BoundRegion,
    Circle,
    bind_region,
    range_join,
    region_values,
)
from vo_archive.vo.published import products as p
from vo_archive.vo.published import target_alias
from vo_archive.vo.published import targets as t
from vo_archive.vo.published import version as v
from vo_archive.vo.sky import counter_clockwise
from vo_archive.vo.statements import (
    IntervalShape,
    Scalar,
    ShapedQuery,
    bind_intervals,
    one_of,
    overlap_test,
)
from vo_archive.vo.votable import Field, Param, spherical_pairs

#: Product types that are 1D spectra.
SPECTRUM_TYPES = ("fluxcal_1d", "telluric_corrected_1d", "extracted_1d")


def _f(name: str, datatype: str, utype: str, ucd: str | None, description: str,
       unit: str | None = None, arraysize: str | None = None,
       xtype: str | None = None, id_: str | None = None) -> Field:
    return Field(name, datatype, arraysize, unit, ucd, "ssa:" + utype, xtype,
                 description, id_)


#: Result FIELDs, in select order (the access columns come from the format).
FIELDS: tuple[Field, ...] = (
    _f("ssa_pubDID", "char", "Curation.PublisherDID", "meta.ref.ivoid",
       "Dataset identifier", arraysize="*", id_="ssa_pubDID"),
    _f("accref", "char", "Access.Reference", "meta.ref.url",
       "URL of the spectrum in this format", arraysize="*"),
    _f("mime", "char", "Access.Format", "meta.code.mime", "Format of the spectrum",
       arraysize="*"),
    _f("accsize", "long", "Access.Size", "phys.size;meta.file",
       "Estimated size of the download", "kbyte"),
    _f("ssa_title", "char", "DataID.Title", "meta.title;meta.dataset",
       "Title of the spectrum", arraysize="*"),
    _f("ssa_length", "long", "Dataset.Length", "meta.number",
       "Number of points in the spectrum"),
    _f("ssa_instrument", "char", "DataID.Instrument", "meta.id;instr",
       "Instrument", arraysize="*"),
    _f("ssa_creatorDID", "char", "DataID.CreatorDID", "meta.id",
       "File name given by the PESSTO pipeline", arraysize="*"),
    _f("ssa_dateObs", "double", "Char.TimeAxis.Coverage.Location.Value",
       "time.epoch", "Mid-exposure time (MJD, UTC)", "d"),
    # ISO 8601 with a space, not a DALI timestamp: pyvo's SSARecord.dateobs
    # parses this column with astropy's "iso" format, which refuses the "T"
    _f("ssa_date", "char", "DataID.Date", "time.epoch;meta.dataset",
       "Mid-exposure time (UTC, ISO 8601 'YYYY-MM-DD hh:mm:ss.sss')",
       arraysize="*"),
    _f("ssa_timeExt", "double", "Char.TimeAxis.Coverage.Bounds.Extent",
       "time.duration;obs.exposure", "Exposure time", "s"),
    _f("ssa_location", "double", "Char.SpatialAxis.Coverage.Location.Value",
       "pos.eq;obs.field", "Position of the aperture (ICRS)", "deg", "2", "point"),
    _f("ssa_aperture", "double", "Char.SpatialAxis.Coverage.Bounds.Extent",
       "phys.angSize;instr.fov", "Angular size of the aperture", "deg"),
    _f("ssa_region", "double", "Char.SpatialAxis.Coverage.Support.Area",
       "pos.outline;obs.field", "Footprint of the slit", "deg", "*", "polygon"),
    _f("ssa_specmid", "double", "Char.SpectralAxis.Coverage.Location.Value",
       "em.wl;instr.bandpass", "Central wavelength", "m"),
    _f("ssa_specext", "double", "Char.SpectralAxis.Coverage.Bounds.Extent",
       "em.wl;instr.bandwidth", "Width of the spectral coverage", "m"),
    _f("ssa_specstart", "double", "Char.SpectralAxis.Coverage.Bounds.Start",
       "em.wl;stat.min", "Shortest wavelength", "m"),
    _f("ssa_specend", "double", "Char.SpectralAxis.Coverage.Bounds.Stop",
       "em.wl;stat.max", "Longest wavelength", "m"),
    _f("ssa_specres", "double", "Char.SpectralAxis.Resolution",
       "spect.resolution;em.wl", "Spectral resolution (FWHM) at mid-band", "m"),
    _f("ssa_respower", "double", "Char.SpectralAxis.ResPower", "spect.resolution",
       "Resolving power"),
    _f("ssa_targname", "char", "Target.Name", "meta.id;src", "Target name",
       arraysize="*"),
    _f("ssa_targclass", "char", "Target.Class", "src.class", "Classification",
       arraysize="*"),
    _f("ssa_redshift", "double", "Target.Redshift", "src.redshift", "Redshift"),
    _f("ssa_targetpos", "double", "Target.Pos", "pos.eq;src",
       "Position of the target (ICRS)", "deg", "2", "point"),
    _f("ssa_snr", "double", "Derivation.SNR", "stat.snr", "Signal-to-noise ratio"),
    _f("ssa_distance", "double", "Query.Score", "pos.angDistance",
       "Distance from the requested position (smaller is better)", "deg"),
)

#: Constant metadata, as PARAMs (SSA 1.1 §4.2.5).
PARAMS: tuple[Param, ...] = tuple(
    Param(Field(name, "char", "*", ucd=ucd, utype="ssa:" + utype), value)
    for name, utype, ucd, value in (
        ("ssa_model", "Dataset.DataModel", "meta.code", "Spectrum-1.0"),
        ("ssa_dstype", "Dataset.Type", "meta.code.class", "Spectrum"),
        ("ssa_publisher", "Curation.Publisher", "meta.curation",
         "PESSTO / INAF-IA2"),
        ("ssa_collection", "DataID.Collection", "meta.id", "PESSTO"),
        ("ssa_creationType", "DataID.CreationType", "meta.code", "archival"),
        ("ssa_cstype", "CoordSys.SpaceFrame.Name", "meta.code.class", "ICRS"),
        ("ssa_fluxucd", "Char.FluxAxis.Ucd", "meta.ucd", "phot.flux.density;em.wl"),
        ("ssa_fluxcalib", "Char.FluxAxis.Calibration", "meta.code.qual",
         "ABSOLUTE"),
        ("ssa_specucd", "Char.SpectralAxis.Ucd", "meta.ucd", "em.wl"),
        ("ssa_speccalib", "Char.SpectralAxis.Calibration", "meta.code.qual",
         "ABSOLUTE"),
    )
)

@dataclass(frozen=True, slots=True)
class SSAShape:
    """What a queryData select is made of (its values are bound)."""

    cone: BoundRegion | None
    band: IntervalShape
    time: IntervalShape
    target: bool
    target_class: bool
    pubdid: bool
    collection: bool | None
    specrp: bool
    snr: bool
    redshift: IntervalShape


def _mid_mjd() -> ColumnElement[Any]:
    return (p.c.mjd_obs + func.coalesce(p.c.mjd_end, p.c.mjd_obs)) / 2.0


def _build(shape: SSAShape) -> Select[Any]:
    mid_wl = (p.c.em_min + p.c.em_max) / 2.0
    cone = shape.cone
    distance = cone.distance(p.c.ra, p.c.dec) if cone else cast(null(), Float)
    cols = [
        p.c.publisher_did, p.c.access_url, p.c.file_size, p.c.filename,
        v.c.em_xel, p.c.instrument, p.c.filename, _mid_mjd(), p.c.exptime,
        p.c.ra, p.c.dec, p.c.fov, v.c.footprint, mid_wl, p.c.em_max - p.c.em_min,
        p.c.em_min, p.c.em_max, mid_wl / func.nullif(p.c.em_res_power, 0),
        p.c.em_res_power, p.c.object, t.c.classification, t.c.redshift,
        t.c.ra, t.c.dec, p.c.snr, distance, p.c.product_id, p.c.version_no,
    ]
    source: Any = p.join(v, v.c.version_id == p.c.version_id).outerjoin(
        t, t.c.target_id == p.c.target_id)
    conds: list[ColumnElement[bool]] = [p.c.mode == "spectroscopy",
                                        one_of(p.c.product_type, "spectrum_types",
                                               value=SPECTRUM_TYPES)]
    if cone:
        # The candidates come first, from the HEALPix ranges and the exact
        # distance test on archive.version (a MATERIALIZED CTE: otherwise the
        # planner starts from the products' type filter and scans them all).
        hv = v.alias("hv")
        cand = (select(hv.c.product_id, hv.c.version_no)
                .select_from(range_join(hv, hv.c.healpix29, None))
                .where(hv.c.is_current, cone.contains(hv.c.ra, hv.c.dec))
                .cte("candidates").prefix_with("MATERIALIZED"))
        source = cand.join(source, (p.c.product_id == cand.c.product_id)
                           & (p.c.version_no == cand.c.version_no))
    if shape.band:
        conds.append(overlap_test(p.c.em_min, p.c.em_max, "band", shape.band))
    if shape.time:
        end = func.coalesce(p.c.mjd_end, p.c.mjd_obs)
        conds.append(overlap_test(p.c.mjd_obs, end, "time", shape.time))
    if shape.target:
        norm = bindparam("target", type_=String)
        aliases = select(target_alias.c.target_id).where(target_alias.c.alias == norm)
        conds.append(or_(p.c.target_id.in_(aliases),
                         func.regexp_replace(func.lower(p.c.object), "[ _-]", "", "g")
                         == norm))
    if shape.target_class:
        conds.append(func.lower(t.c.classification)
                     == bindparam("target_class", type_=String))
    if shape.pubdid:
        conds.append(one_of(func.lower(p.c.publisher_did), "pubdid"))
    if shape.collection is False:
        # not false(): SQLAlchemy would fold the whole WHERE into it and drop
        # the band and time parameters the shape leaves open
        conds.append(literal_column("false", Boolean))
    if shape.specrp:
        conds.append(p.c.em_res_power >= bindparam("specrp", type_=Float))
    if shape.snr:
        conds.append(p.c.snr >= bindparam("snr", type_=Float))
    if shape.redshift:
        conds.append(overlap_test(t.c.redshift, t.c.redshift, "redshift",
                                  shape.redshift))
    order = [distance] if cone else []
    return (select(*cols).select_from(source).where(*conds)
            .order_by(*order, p.c.mjd_obs, p.c.product_id)
            .limit(bindparam("limit", type_=Integer)))


def build_query(q: SSAQuery) -> ShapedQuery:
    """Return the queryData query over the visible 1D spectra, nearest first."""
    values: dict[str, Any] = {"limit": q.maxrec + 1}
    cone = region = None
    if q.ra is not None and q.dec is not None:
        region = Circle(q.ra, q.dec, q.size / 2.0)
        cone, cone_values = bind_region(region, "cone")
        values.update(cone_values)
    band, band_values = bind_intervals("band", q.band)
    time, time_values = bind_intervals("time", q.time)
    redshift, z_values = bind_intervals("redshift", (q.redshift,) if q.redshift else ())
    values.update(band_values)
    values.update(time_values)
    values.update(z_values)
    if q.target:
        values["target"] = "".join(ch for ch in q.target.lower() if ch not in " -_")
    if q.target_class:
        values["target_class"] = q.target_class.lower()
    if q.pubdid:
        values["pubdid"] = [d.lower() for d in q.pubdid]
    if q.specrp is not None:
        values["specrp"] = q.specrp
    if q.snr is not None:
        values["snr"] = q.snr
    shape = SSAShape(cone, band, time, bool(q.target), bool(q.target_class),
                     bool(q.pubdid), "PESSTO" in q.collection if q.collection else None,
                     q.specrp is not None, q.snr is not None, redshift)

    def resolve(scalar: Scalar) -> dict[str, Any]:
        if region is None:
            return values
        return {**values, **region_values(scalar, [region])}

    return ShapedQuery(("ssa", shape), functools.partial(_build, shape), resolve,
                       from_ranges=cone is not None)


def getdata_url(did: str, fmt: SpectrumFormat) -> str:
    """Return the archive path of a getData request (URL-encoded, SSA 1.1 §7)."""
    return (f"/ssap?REQUEST=getData&PUBDID={quote(did, safe='')}"
            f"&FORMAT={quote(fmt.value, safe='')}")


def spectrum_format(formats: frozenset[SpectrumFormat]) -> SpectrumFormat | None:
    """Return the one format the rows name (SSA 1.1 §4.1.1.5).

    The native FITS unless only the VOTable was asked for; None when no
    format is served (FORMAT=graphic).
    """
    if SpectrumFormat.FITS in formats:
        return SpectrumFormat.FITS
    return SpectrumFormat.VOTABLE if formats else None


_MJD_EPOCH = datetime(1858, 11, 17)


def mjd_to_iso(mjd: float | None) -> str | None:
    """Return an MJD (UTC) as ISO 8601 ``YYYY-MM-DD hh:mm:ss.sss``."""
    if mjd is None or mjd != mjd:
        return None
    t = _MJD_EPOCH + timedelta(days=mjd)
    return t.isoformat(sep=" ", timespec="milliseconds")


def row_expander(formats: frozenset[SpectrumFormat], absolute: Callable[[str], str]
                 ) -> Callable[[Iterator[Sequence[Any]]], Iterator[Sequence[Any]]]:
    """Return a function turning database rows into output rows.

    One row per spectrum, in the format :func:`spectrum_format` chooses; the
    other format is offered by the row's DataLink document, so that clients
    count spectra, not files.
    """
    fmt = spectrum_format(formats)

    def expand(rows: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        if fmt is None:
            return
        for r in rows:
            (did, url, size, title, length, inst, creator, mjd, exptime, ra, dec, fov,
             footprint, mid, ext, start, stop, res, power, target, tclass, z, tra,
             tdec, snr, dist, _pid, _vno) = r
            pairs = spherical_pairs(footprint)
            common = [title, length, inst, creator, mjd, mjd_to_iso(mjd), exptime,
                      None if ra is None else [ra, dec], fov,
                      counter_clockwise(pairs) if pairs else None, mid, ext, start,
                      stop, res, power, target, tclass, z,
                      None if tra is None else [tra, tdec], snr, dist]
            if fmt is SpectrumFormat.FITS:
                yield [did, absolute(url), fmt.value, (size + 1023) // 1024, *common]
            else:
                kb = ((length or 1000) * 3 * 24 + 4096) // 1024
                yield [did, absolute(getdata_url(did, fmt)), fmt.value, kb, *common]

    return expand
