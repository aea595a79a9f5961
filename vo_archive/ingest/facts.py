"""Physical facts of a product read from its headers: time, sky, spectral coverage.

Everything here is derived from header keywords alone (data model §5), so that
ingest never reads data arrays.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from vo_archive.ingest.classify import Classification, ClassificationError, Mode
from vo_archive.ingest.fitsfile import HDUInfo, HeaderValue

MJD_EPOCH = datetime(1858, 11, 17)

#: Approximate band passes (nm) of the imaging filters, for em_min / em_max.
FILTER_BANDS_NM: dict[str, tuple[float, float]] = {
    "U640": (330.0, 400.0), "B639": (390.0, 490.0), "V641": (490.0, 600.0),
    "R642": (570.0, 730.0), "g782": (400.0, 550.0), "r784": (550.0, 700.0),
    "i705": (690.0, 850.0), "z623": (820.0, 1000.0),
    "J": (1170.0, 1330.0), "H": (1500.0, 1800.0), "Ks": (1990.0, 2310.0),
}

#: Keywords naming calibration files used by a product (data model §8).
CALIBRATION_KEYWORDS = ("ZEROCOR", "FLATCOR", "ARC", "SENSFUN", "ATMOFILE", "SENSPHOT",
                        "SKYSUB", "ILLUMCOR", "FIXPIX", "FRICOR")
_PROV = re.compile(r"^(PROV|TRACE|ASSON)(\d+)$")


@dataclass(slots=True)
class ProductFacts:
    """What the archive records of one file, besides its classification."""

    object: str | None
    date_obs: datetime | None
    night: date | None
    mjd_obs: float | None
    mjd_end: float | None
    exptime: float | None
    ra: float | None
    dec: float | None
    corners: list[tuple[float, float]] | None
    fov: float | None
    naxis1: int | None
    naxis2: int | None
    pixscale: float | None
    psf_fwhm: float | None
    em_min: float | None
    em_max: float | None
    em_res_power: float | None
    em_xel: int | None
    filter: str | None
    disperser: str | None
    slit: str | None
    bunit: str | None
    snr: float | None
    prog_id: str | None
    ob_id: int | None
    procsoft: str | None
    quality: str | None
    data_rel: str | None
    provenance: list[tuple[str, str, str]] = field(default_factory=list)


def _num(header: dict[str, HeaderValue], *keys: str) -> float | None:
    for key in keys:
        value = header.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                continue
            if math.isfinite(f):
                return f
    return None


def _str(header: dict[str, HeaderValue], *keys: str) -> str | None:
    for key in keys:
        value = header.get(key)
        if value is not None and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def parse_date_obs(value: str) -> datetime:
    """Parse a FITS DATE-OBS (``YYYY-MM-DD[Thh:mm:ss[.sss]]``)."""
    text = value.strip().rstrip("Z")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ClassificationError(f"DATE-OBS={value!r} is not an ISO date")


def mjd_of(dt: datetime) -> float:
    """Return the MJD of a UTC datetime."""
    return (dt - MJD_EPOCH).total_seconds() / 86400.0


def datetime_of_mjd(mjd: float) -> datetime:
    """Return the UTC datetime of an MJD."""
    return MJD_EPOCH + timedelta(days=mjd)


def night_of(dt: datetime) -> date:
    """Return the observing night of a UT time: the date of UT minus 12 hours."""
    return (dt - timedelta(hours=12)).date()


def _tan_corners(h: dict[str, HeaderValue]) -> list[tuple[float, float]] | None:
    """Sky positions of the four image corners from a TAN WCS (FITS WCS paper II)."""
    if not str(h.get("CTYPE1", "")).startswith("RA---TAN"):
        return None
    nx, ny = h.get("NAXIS1"), h.get("NAXIS2")
    crval1, crval2 = _num(h, "CRVAL1"), _num(h, "CRVAL2")
    crpix1, crpix2 = _num(h, "CRPIX1"), _num(h, "CRPIX2")
    if (not isinstance(nx, int) or not isinstance(ny, int) or crval1 is None
            or crval2 is None or crpix1 is None or crpix2 is None):
        return None
    cd11, cd12 = _num(h, "CD1_1"), _num(h, "CD1_2") or 0.0
    cd21, cd22 = _num(h, "CD2_1") or 0.0, _num(h, "CD2_2")
    if cd11 is None or cd22 is None:
        cdelt1, cdelt2 = _num(h, "CDELT1"), _num(h, "CDELT2")
        if cdelt1 is None or cdelt2 is None:
            return None
        cd11, cd22 = cdelt1, cdelt2
    a0, d0 = math.radians(crval1), math.radians(crval2)
    out = []
    for px, py in ((0.5, 0.5), (nx + 0.5, 0.5), (nx + 0.5, ny + 0.5), (0.5, ny + 0.5)):
        dx, dy = px - crpix1, py - crpix2
        x = math.radians(cd11 * dx + cd12 * dy)
        y = math.radians(cd21 * dx + cd22 * dy)
        # inverse gnomonic projection
        rho = math.hypot(x, y)
        c = math.atan(rho)
        if rho == 0:
            ra, dec = a0, d0
        else:
            dec = math.asin(
                math.cos(c) * math.sin(d0) + y * math.sin(c) * math.cos(d0) / rho
            )
            ra = a0 + math.atan2(
                x * math.sin(c),
                rho * math.cos(d0) * math.cos(c) - y * math.sin(d0) * math.sin(c),
            )
        out.append((math.degrees(ra) % 360.0, math.degrees(dec)))
    return out


def _square(ra: float, dec: float, half: float) -> list[tuple[float, float]]:
    """Corners of a small square of half-side ``half`` degrees around a position.

    The corners are placed along the bearings 45°, 135°, 225° and 315° on the
    sphere, so the square stays valid at the poles and across RA = 0/360.
    """
    if abs(dec) > 90.0 - 1e-9:
        lat = math.copysign(90.0 - half * math.sqrt(2.0), dec)
        return [(lon, lat) for lon in (45.0, 135.0, 225.0, 315.0)]
    dist = math.radians(half * math.sqrt(2.0))
    lat1, lon1 = math.radians(dec), math.radians(ra)
    out = []
    for bearing_deg in (45.0, 135.0, 225.0, 315.0):
        b = math.radians(bearing_deg)
        lat2 = math.asin(math.sin(lat1) * math.cos(dist)
                         + math.cos(lat1) * math.sin(dist) * math.cos(b))
        lon2 = lon1 + math.atan2(math.sin(b) * math.sin(dist) * math.cos(lat1),
                                 math.cos(dist) - math.sin(lat1) * math.sin(lat2))
        out.append((math.degrees(lon2) % 360.0, math.degrees(lat2)))
    return out


def _spectral_range_m(
    primary: dict[str, HeaderValue], hdus: list[HDUInfo]
) -> tuple[float | None, float | None, int | None]:
    lo, hi = _num(primary, "WAVELMIN"), _num(primary, "WAVELMAX")
    nelem = primary.get("NELEM")
    if lo is not None and hi is not None:
        return lo * 1e-9, hi * 1e-9, nelem if isinstance(nelem, int) else None
    lo, hi = _num(primary, "XMIN"), _num(primary, "XMAX")
    if lo is not None and hi is not None:
        return lo * 1e-10, hi * 1e-10, nelem if isinstance(nelem, int) else None
    for hdu in hdus[1:]:
        tlo, thi = _num(hdu.header, "TDMIN1"), _num(hdu.header, "TDMAX1")
        if tlo is not None and thi is not None:
            n = hdu.header.get("NELEM")
            return tlo * 1e-10, thi * 1e-10, n if isinstance(n, int) else None
    axis = 2 if primary.get("DISPAXIS") == 2 else 1
    start = _num(primary, f"CRVAL{axis}")
    step = _num(primary, f"CD{axis}_{axis}", f"CDELT{axis}")
    n = primary.get(f"NAXIS{axis}")
    if start is not None and step is not None and isinstance(n, int) and n > 0:
        ref = _num(primary, f"CRPIX{axis}") or 1.0
        first = start + (1 - ref) * step
        last = start + (n - ref) * step
        return min(first, last) * 1e-10, max(first, last) * 1e-10, n
    return None, None, None


def extract_facts(hdus: list[HDUInfo], cls: Classification) -> ProductFacts:
    """Read time, position, footprint and spectral coverage from the headers.

    Raises
    ------
    ClassificationError
        If a science product lacks RA/DEC, or DATE-OBS / MJD-OBS are missing or
        invalid.
    """
    h = hdus[0].header
    ext = hdus[1].header if len(hdus) > 1 else {}
    merged: dict[str, HeaderValue] = {**ext, **h} if ext else h

    mjd_obs = _num(merged, "MJD-OBS")
    date_text = _str(merged, "DATE-OBS")
    date_obs = parse_date_obs(date_text) if date_text else None
    if date_obs is None and mjd_obs is not None:
        date_obs = datetime_of_mjd(mjd_obs)
    if date_obs is None:
        raise ClassificationError("no DATE-OBS or MJD-OBS")
    if mjd_obs is None:
        mjd_obs = mjd_of(date_obs)
    exptime = _num(merged, "TEXPTIME", "EXPTIME")
    mjd_end = _num(merged, "MJD-END")
    if mjd_end is None:
        mjd_end = mjd_obs + (exptime or 0.0) / 86400.0

    ra, dec = _num(merged, "RA"), _num(merged, "DEC")
    if ra is not None and not 0.0 <= ra <= 360.0:
        raise ClassificationError(f"RA={ra} is outside [0, 360]")
    if dec is not None and not -90.0 <= dec <= 90.0:
        raise ClassificationError(f"DEC={dec} is outside [-90, 90]")
    if (ra is None or dec is None) and cls.category.value == "science":
        raise ClassificationError("science product without RA/DEC")
    if ra is not None and ra == 360.0:
        ra = 0.0

    image_header = h if isinstance(h.get("NAXIS1"), int) else ext
    corners = None
    naxis1 = image_header.get("NAXIS1") if image_header else None
    naxis2 = image_header.get("NAXIS2") if image_header else None
    pixscale = _num(merged, "PIXSCALE")
    fov = None
    aperture = _num(merged, "APERTURE")
    if cls.mode is Mode.IMAGING and image_header:
        corners = _tan_corners(image_header)
        if pixscale is None:
            cd11 = _num(image_header, "CD1_1")
            cd21 = _num(image_header, "CD2_1") or 0.0
            if cd11 is not None:
                pixscale = math.hypot(cd11, cd21) * 3600.0
        if pixscale and isinstance(naxis1, int) and isinstance(naxis2, int):
            fov = math.hypot(naxis1, naxis2) * pixscale / 3600.0
    if corners is None and ra is not None and dec is not None:
        half = max(aperture or 0.0, 1.0 / 3600.0)
        corners = _square(ra, dec, half)
        fov = fov or 2 * half * math.sqrt(2)

    if cls.mode is Mode.SPECTROSCOPY:
        em_min, em_max, em_xel = _spectral_range_m(h, hdus)
    else:
        em_min = em_max = None
        em_xel = 1
        band = FILTER_BANDS_NM.get(_str(merged, "FILTER") or "")
        if band:
            em_min, em_max = band[0] * 1e-9, band[1] * 1e-9

    provenance: list[tuple[str, str, str]] = []
    for key, value in h.items():
        if not isinstance(value, str) or not value.strip():
            continue
        m = _PROV.match(key)
        if m:
            relation = {"PROV": "raw", "TRACE": "parent", "ASSON": "associated"}[
                m.group(1)
            ]
            provenance.append((key, relation, value.strip()))
        elif key in CALIBRATION_KEYWORDS:
            provenance.append((key, "calibration", value.strip()))

    ob = merged.get("OBID1", merged.get("ESO OBS ID"))
    return ProductFacts(
        object=_str(merged, "OBJECT"),
        date_obs=date_obs,
        night=night_of(date_obs),
        mjd_obs=mjd_obs,
        mjd_end=mjd_end,
        exptime=exptime,
        ra=ra,
        dec=dec,
        corners=corners,
        fov=fov,
        naxis1=naxis1 if isinstance(naxis1, int) else None,
        naxis2=naxis2 if isinstance(naxis2, int) else None,
        pixscale=pixscale,
        psf_fwhm=_num(merged, "PSF_FWHM"),
        em_min=em_min,
        em_max=em_max,
        em_res_power=_num(merged, "SPEC_RES"),
        em_xel=em_xel,
        filter=_str(merged, "FILTER", "ESO INS FILT1 NAME"),
        disperser=_str(merged, "DISPELEM", "ESO INS GRIS1 NAME", "ESO INS OPTI2 NAME"),
        slit=_str(merged, "ESO INS SLIT1 NAME", "ESO INS OPTI1 NAME"),
        bunit=_str(merged, "BUNIT"),
        snr=_num(merged, "SNR"),
        prog_id=_str(merged, "PROG_ID", "ESO OBS PROG ID"),
        ob_id=ob if isinstance(ob, int) and not isinstance(ob, bool) else None,
        procsoft=_str(merged, "PROCSOFT"),
        quality=_str(merged, "QUALITY"),
        data_rel=_str(merged, "DATA_REL", "RELEASE"),
        provenance=provenance,
    )
