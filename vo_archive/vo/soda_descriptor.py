"""The SODA service descriptor of one dataset, for its DataLink document.

SODA 1.0 §4.3: a DataLink document carries one descriptor per dataset, its ID
PARAM holding the dataset's DID and the cutout parameters' VALUES giving the
ranges for which data come back (CIRCLE and POLYGON: a MAX covering the
footprint; BAND and TIME: MIN and MAX). Images get CIRCLE, POLYGON, POS, BAND,
TIME and POL; 1D spectra get BAND, TIME and POL. The descriptor is referenced
by a ``#cutout`` link row (DataLink 1.1 §3.2.3, ``service_def``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import Connection, select

from vo_archive.vo.dal import service_descriptor
from vo_archive.vo.published import version
from vo_archive.vo.votable import Field, spherical_pairs

SODA_STANDARD = "ivo://ivoa.net/std/SODA#sync-1.0"
SODA_PATH = "/soda/sync"
#: Product types cut along BAND (one 1D spectrum per file).
SPECTRUM_1D_TYPES = ("fluxcal_1d", "telluric_corrected_1d", "extracted_1d")


@dataclass(frozen=True, slots=True)
class Cutout:
    """The ``#cutout`` link of a dataset: the descriptor's XML ID and the XML."""

    descriptor_id: str
    descriptor: str


def _values(min_: str | None, max_: str | None) -> str:
    lo = f'<MIN value="{min_}"/>' if min_ is not None else ""
    hi = f'<MAX value="{max_}"/>' if max_ is not None else ""
    return f"<VALUES>{lo}{hi}</VALUES>" if lo or hi else ""


def _param(name: str, datatype: str, arraysize: str | None, ucd: str,
           description: str, unit: str | None = None, xtype: str | None = None,
           inner: str = "") -> str:
    return Field(name, datatype, arraysize, unit, ucd, xtype=xtype,
                 description=description).element("PARAM", "", inner)


def _covering_circle(pairs: list[float]) -> tuple[float, float, float]:
    """Return (ra, dec, radius) of a circle close to the smallest covering pairs."""
    vecs = [(math.cos(math.radians(d)) * math.cos(math.radians(a)),
             math.cos(math.radians(d)) * math.sin(math.radians(a)),
             math.sin(math.radians(d))) for a, d in zip(pairs[::2], pairs[1::2],
                                                          strict=True)]
    x, y, z = (sum(v[i] for v in vecs) for i in range(3))
    norm = math.sqrt(x * x + y * y + z * z) or 1.0
    ra = math.degrees(math.atan2(y, x)) % 360.0
    ra = 0.0 if ra >= 360.0 else ra  # -1e-15 % 360 is 360.0
    dec = math.degrees(math.asin(max(-1.0, min(1.0, z / norm))))
    radius = max(math.degrees(math.acos(max(-1.0, min(1.0, (
        v[0] * x + v[1] * y + v[2] * z) / norm)))) for v in vecs)
    return ra, dec, radius


def cutout_link(conn: Connection, did: str, version_id: int, mode: str,
                product_type: str) -> Cutout | None:
    """Return the SODA descriptor of a dataset, or None if it cannot be cut."""
    spectrum = product_type in SPECTRUM_1D_TYPES
    if mode != "imaging" and not spectrum:
        return None
    v = version.c
    row = conn.execute(select(v.footprint, v.em_min, v.em_max, v.mjd_obs, v.mjd_end,
                              v.header["CTYPE1"].astext)
                       .where(v.version_id == version_id)).one()
    footprint, em_min, em_max, t_min, t_max, ctype1 = row
    pairs = spherical_pairs(str(footprint)) if footprint is not None else None
    if mode == "imaging" and not (pairs and str(ctype1 or "").startswith("RA")):
        return None  # no sky WCS (biases, flats): nothing to cut by position
    inputs = [Field("ID", "char", "*", ucd="meta.ref.url;meta.curation",
                    description="Publisher DID of the dataset").element("PARAM", did)]
    if mode == "imaging" and pairs:
        ra, dec, radius = _covering_circle(pairs)
        inputs += [
            _param("CIRCLE", "double", "3", "pos.outline;obs",
                   "A circle (ra dec radius, ICRS) the cutout should cover", "deg",
                   "circle", _values(None, f"{ra!r} {dec!r} {radius!r}")),
            _param("POLYGON", "double", "*", "pos.outline;obs",
                   "A polygon (ra dec pairs, ICRS) the cutout should cover", "deg",
                   "polygon", _values(None, " ".join(repr(x) for x in pairs))),
            _param("POS", "char", "*", "pos.outline;obs",
                   "Region to cut out: CIRCLE, RANGE or POLYGON (ICRS degrees)"),
        ]
    band_desc = ("Wavelength interval to extract (vacuum, metres)" if spectrum
                 else "Wavelength interval the image's filter must overlap (metres)")
    if em_min is not None and em_max is not None:
        inputs.append(_param("BAND", "double", "2", "em.wl;stat.interval", band_desc,
                             "m", "interval", _values(repr(em_min), repr(em_max))))
    if t_min is not None and t_max is not None:
        inputs.append(_param("TIME", "double", "2", "time.interval;obs.exposure",
                             "MJD interval the exposure must overlap", "d",
                             "interval", _values(repr(t_min), repr(t_max))))
    inputs.append(_param("POL", "char", "*", "meta.code;phys.polarization",
                         "Polarisation states (the data are Stokes I only)",
                         inner="<VALUES><OPTION value=\"I\"/></VALUES>"))
    ident = f"soda-{version_id}"
    return Cutout(ident, service_descriptor(
        ident, SODA_PATH, SODA_STANDARD, inputs,
        description="Cut out a region of the image" if mode == "imaging"
        else "Cut out a wavelength range of the spectrum",
        content_type="application/fits"))
