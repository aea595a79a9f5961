"""Cut a PESSTO product along the SODA 1.0 axes (SODA 1.0 §3.3); no Flask.

- Images: CIRCLE, POLYGON or POS select the smallest pixel box holding every
  pixel whose centre is in the region (and the pixels holding the region's
  centre or vertices, so that a region smaller than a pixel still gets one;
  a region narrower than 1/128 of the image that crosses it with no vertex
  in it can be missed);
  astropy's ``Cutout2D`` cuts it and its WCS (CRPIX) goes into the header.
  Other image HDUs of the same shape (weight maps) are cut alike; the others
  are kept as they are.
- 1D spectra (the Phase 3 binary table and the pipeline's 1D images): BAND
  keeps the pixels whose wavelength is in the band (the nearest one for a
  band narrower than a pixel); the wavelength keywords follow.
- TIME and POL (one exposure, no polarisation: Stokes I only), BAND on images
  and positions on spectra select the whole product or nothing.

A filter that selects nothing raises :class:`NoOverlap` (SODA 1.0 §5.1 answers
it with 204 No Content).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS, FITSFixedWarning

from soda.params import CutoutRequest
from vo_archive.vo.dali.errors import UsageFault
from vo_archive.vo.dali.params import Interval
from vo_archive.vo.sky import Box, Circle, Polygon, Region
from vo_archive.vo.soda_descriptor import SPECTRUM_1D_TYPES

Floats = npt.NDArray[np.float64]


class NoOverlap(Exception):
    """The filters select no data of the product."""


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the archive's tables say a product version covers."""

    filename: str
    mode: str
    product_type: str
    ra: float | None
    dec: float | None
    em_min: float | None
    em_max: float | None
    t_min: float | None
    t_max: float | None


def _unit_vectors(ra: Floats, dec: Floats) -> Floats:
    a, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


def _in_polygon(poly: Polygon, ra: Floats, dec: Floats) -> npt.NDArray[np.bool_]:
    """Return which points are in a spherical polygon (edges: great circles).

    The polygon is drawn in the gnomonic projection about the mean of its
    vertices, where great circles are straight lines, and an even-odd
    crossing test decides; points of the far hemisphere are outside.
    """
    verts = _unit_vectors(np.array([v[0] for v in poly.vertices]),
                          np.array([v[1] for v in poly.vertices]))
    centre = verts.sum(axis=0)
    norm = float(np.linalg.norm(centre))
    if norm < 1e-9 or float((verts @ (centre / norm)).min()) < 0.02:
        raise UsageFault("parameter POLYGON: the polygon spans a hemisphere or more",
                         "POLYGON")
    c = centre / norm
    e1 = np.cross([0.0, 0.0, 1.0], c) if abs(c[2]) < 0.9 else np.cross([1.0, 0, 0], c)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(c, e1)
    pts = _unit_vectors(ra, dec)
    z = pts @ c
    front = z > 1e-9
    safe = np.where(front, z, 1.0)
    x, y = (pts @ e1) / safe, (pts @ e2) / safe
    vx, vy = (verts @ e1) / (verts @ c), (verts @ e2) / (verts @ c)
    inside = np.zeros(x.shape, dtype=bool)
    for i in range(len(vx)):
        x1, y1, x2, y2 = vx[i - 1], vy[i - 1], vx[i], vy[i]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < at)
    result: npt.NDArray[np.bool_] = inside & front
    return result


def contains(region: Region, ra: Floats, dec: Floats) -> npt.NDArray[np.bool_]:
    """Return which ICRS positions (degrees) are in a region."""
    if isinstance(region, Circle):
        centre = _unit_vectors(np.array(region.ra), np.array(region.dec))
        cos_sep = _unit_vectors(ra, dec) @ centre
        return np.asarray(cos_sep >= math.cos(math.radians(region.radius)))
    if isinstance(region, Box):
        ra_in = (ra % 360.0 >= region.ra_min) & (ra % 360.0 <= region.ra_max)
        return np.asarray(ra_in & (dec >= region.dec_min) & (dec <= region.dec_max))
    return _in_polygon(region, ra, dec)


def _anchors(region: Region) -> list[tuple[float, float]]:
    """Points of a region that always select the pixel holding them."""
    if isinstance(region, Circle):
        return [(region.ra, region.dec)]
    if isinstance(region, Box):
        return [((region.ra_min + region.ra_max) / 2, (region.dec_min + region.dec_max)
                 / 2)]
    return list(region.vertices)


def _celestial_wcs(header: fits.Header) -> WCS | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header)
    return wcs.celestial if wcs.has_celestial and wcs.naxis == 2 else None


def _image_index(hdul: fits.HDUList) -> int:
    for i, hdu in enumerate(hdul):
        if (isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.data is not None
                and hdu.data.ndim == 2 and _celestial_wcs(hdu.header) is not None):
            return i
    raise UsageFault("this product has no image with sky coordinates (WCS): it "
                     "cannot be cut by position")


def _mask(wcs: WCS, region: Region, xs: npt.NDArray[np.int64],
          ys: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Return which pixels of the grid ``ys`` x ``xs`` have their centre in a region."""
    xx, yy = np.meshgrid(xs, ys)
    ra, dec = wcs.pixel_to_world_values(xx.ravel(), yy.ravel())
    return contains(region, np.asarray(ra, float), np.asarray(dec, float)
                    ).reshape(ys.size, xs.size)


def _grid(n: int, step: int) -> npt.NDArray[np.int64]:
    """Return every ``step``-th index of ``range(n)``, the last one included."""
    return np.unique(np.append(np.arange(0, n, step), n - 1))


def _pixel_box(wcs: WCS, shape: tuple[int, int], region: Region
               ) -> tuple[int, int, int, int]:
    """Return (x0, x1, y0, y1), inclusive, of the pixels a region selects.

    A grid of about 128 x 128 pixels finds where the region is; then only the
    four strips, one grid step either side of each edge of what it found, are
    tested pixel by pixel (the box's edges lie there). The pixels holding the
    region's centre or vertices always count, so a region smaller than the
    grid step is not missed.
    """
    ny, nx = shape
    xs: list[int] = []
    ys: list[int] = []
    for a, d in _anchors(region):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            px, py = wcs.world_to_pixel_values(a, d)
        if np.isfinite(px) and np.isfinite(py):
            ix, iy = round(float(px)), round(float(py))
            if 0 <= ix < nx and 0 <= iy < ny:
                xs.append(ix)
                ys.append(iy)
    step = max(1, min(nx, ny) // 128)
    gx, gy = _grid(nx, step), _grid(ny, step)
    rows, cols = np.nonzero(_mask(wcs, region, gx, gy))
    xs += gx[cols].tolist()
    ys += gy[rows].tolist()
    if not xs:
        raise NoOverlap("the region does not overlap the image")
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if step == 1:
        return x0, x1, y0, y1
    wx = np.arange(max(0, x0 - step), min(nx - 1, x1 + step) + 1)
    wy = np.arange(max(0, y0 - step), min(ny - 1, y1 + step) + 1)
    left, right = wx[wx <= x0 + step], wx[wx >= x1 - step]
    low, high = wy[wy <= y0 + step], wy[wy >= y1 - step]
    found = np.flatnonzero(_mask(wcs, region, left, wy).any(axis=0))
    x0 = min(x0, int(left[found[0]])) if found.size else x0
    found = np.flatnonzero(_mask(wcs, region, right, wy).any(axis=0))
    x1 = max(x1, int(right[found[-1]])) if found.size else x1
    found = np.flatnonzero(_mask(wcs, region, wx, low).any(axis=1))
    y0 = min(y0, int(low[found[0]])) if found.size else y0
    found = np.flatnonzero(_mask(wcs, region, wx, high).any(axis=1))
    y1 = max(y1, int(high[found[-1]])) if found.size else y1
    return x0, x1, y0, y1


def cut_image(hdul: fits.HDUList, region: Region, filename: str) -> fits.HDUList:
    """Return the HDUs with the image (and same-shaped images) cut to a region."""
    index = _image_index(hdul)
    target = hdul[index]
    wcs = _celestial_wcs(target.header)
    assert wcs is not None  # noqa: S101 - _image_index checked it
    shape = target.data.shape
    x0, x1, y0, y1 = _pixel_box(wcs, shape, region)
    position = ((x0 + x1) / 2.0, (y0 + y1) / 2.0)
    size = (y1 - y0 + 1, x1 - x0 + 1)
    out: list[Any] = []
    for hdu in hdul:
        same = (isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU))
                and hdu.data is not None and hdu.data.shape == shape)
        if not same:
            out.append(hdu.copy())
            continue
        cut = Cutout2D(hdu.data, position, size, wcs=wcs, mode="trim")
        header = hdu.header.copy()
        for key in ("BSCALE", "BZERO", "CHECKSUM", "DATASUM"):
            header.remove(key, ignore_missing=True)
        header["CRPIX1"] = float(cut.wcs.wcs.crpix[0])
        header["CRPIX2"] = float(cut.wcs.wcs.crpix[1])
        (ys, xs) = cut.bbox_original
        header["LTV1"] = float(header.get("LTV1", 0.0)) - xs[0]
        header["LTV2"] = float(header.get("LTV2", 0.0)) - ys[0]
        header.add_history(f"SODA cutout of {filename}: pixels "
                           f"[{xs[0] + 1}:{xs[1] + 1},{ys[0] + 1}:{ys[1] + 1}]")
        kind = fits.PrimaryHDU if isinstance(hdu, fits.PrimaryHDU) else fits.ImageHDU
        out.append(kind(data=np.ascontiguousarray(cut.data), header=header))
    return fits.HDUList(out)


def _band_slice(wave: Floats, band: Interval) -> slice:
    """Return the pixels of a wavelength array (Å) in a band (metres)."""
    lo, hi = band.lo * 1e10, band.hi * 1e10
    keep = np.flatnonzero((wave >= lo) & (wave <= hi))
    if keep.size:
        return slice(int(keep[0]), int(keep[-1]) + 1)
    if wave.size and hi >= float(wave.min()) and lo <= float(wave.max()):
        nearest = int(np.argmin(np.abs(wave - (lo + hi) / 2.0)))
        return slice(nearest, nearest + 1)
    raise NoOverlap("the band does not overlap the spectrum")


def _note_range(header: fits.Header, wave: Floats) -> None:
    lo, hi = float(wave.min()), float(wave.max())
    for key, value in (("WAVELMIN", lo / 10), ("WAVELMAX", hi / 10), ("XMIN", lo),
                       ("XMAX", hi), ("SPEC_VAL", (lo + hi) / 20),
                       ("SPEC_BW", (hi - lo) / 10), ("NELEM", int(wave.size)),
                       ("TDMIN1", lo), ("TDMAX1", hi)):
        if key in header:
            header[key] = value
    for key in ("CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True)


def cut_spectrum(hdul: fits.HDUList, band: Interval, filename: str) -> fits.HDUList:
    """Return the HDUs with the 1D spectrum cut to a wavelength band."""
    primary = hdul[0].header.copy()
    for i, hdu in enumerate(hdul[1:], 1):
        if isinstance(hdu, fits.BinTableHDU) and "WAVE" in hdu.columns.names:
            wave = np.asarray(hdu.data[0]["WAVE"], float)
            s = _band_slice(wave, band)
            cols = []
            for col in hdu.columns:
                cell = np.asarray(hdu.data[0][col.name])
                if cell.ndim == 1 and cell.size == wave.size:
                    cell = cell[s]
                    fmt = f"{cell.size}{col.format.format}"
                else:
                    fmt = col.format
                cols.append(fits.Column(col.name, fmt, unit=col.unit,
                                        array=[cell] if cell.ndim else [cell.item()]))
            table = fits.BinTableHDU.from_columns(cols, header=hdu.header.copy())
            _note_range(table.header, wave[s])
            _note_range(primary, wave[s])
            primary.add_history(f"SODA cutout of {filename}: spectral pixels "
                                f"{s.start + 1}-{s.stop}")
            out = [h.copy() for h in hdul]
            out[0] = fits.PrimaryHDU(data=hdul[0].data, header=primary)
            out[i] = table
            return fits.HDUList(out)
    data = hdul[0].data
    if data is None or data.ndim not in (1, 2, 3) or "CRVAL1" not in primary:
        raise UsageFault("this product holds no 1D spectrum that can be cut by BAND")
    n = data.shape[-1]
    step = float(primary.get("CD1_1", primary.get("CDELT1", 0.0)))
    wave = float(primary["CRVAL1"]) + (np.arange(n) + 1.0 -
                                       float(primary.get("CRPIX1", 1.0))) * step
    s = _band_slice(wave, band)
    primary["CRPIX1"] = float(primary.get("CRPIX1", 1.0)) - s.start
    for key in ("BSCALE", "BZERO"):
        primary.remove(key, ignore_missing=True)
    _note_range(primary, wave[s])
    primary.add_history(f"SODA cutout of {filename}: spectral pixels "
                        f"{s.start + 1}-{s.stop}")
    out = [h.copy() for h in hdul]
    out[0] = fits.PrimaryHDU(data=np.ascontiguousarray(data[..., s]), header=primary)
    return fits.HDUList(out)


def _overlaps(iv: Interval, lo: float | None, hi: float | None) -> bool:
    if lo is None or hi is None:
        return True  # nothing known to refuse with
    return iv.lo <= hi and iv.hi >= lo


def cut(path: Path, req: CutoutRequest, cov: Coverage) -> bytes | None:
    """Return the cutout of a product as a FITS file; None: the whole file.

    Raises
    ------
    NoOverlap
        If a filter selects no data of the product.
    UsageFault
        If the product cannot be cut along an axis asked for.
    """
    if req.time is not None and not _overlaps(req.time, cov.t_min, cov.t_max):
        raise NoOverlap("the product was observed outside the TIME interval")
    if req.pol and "I" not in req.pol:
        raise NoOverlap("PESSTO products hold unpolarised intensity (I) only")
    spectrum = cov.product_type in SPECTRUM_1D_TYPES
    if req.band is not None and not spectrum and not _overlaps(
            req.band, cov.em_min, cov.em_max):
        raise NoOverlap("the product's wavelengths are outside the BAND interval")
    image_cut = req.region is not None and cov.mode == "imaging"
    if (req.region is not None and not image_cut and cov.ra is not None
            and cov.dec is not None and not contains(
                req.region, np.array([cov.ra]), np.array([cov.dec]))[0]):
        raise NoOverlap("the product's position is outside the region")
    band_cut = req.band is not None and spectrum
    if not (image_cut or band_cut):
        return None
    with fits.open(path, memmap=False) as hdul:
        result = hdul
        if image_cut and req.region is not None:
            result = cut_image(result, req.region, cov.filename)
        if band_cut and req.band is not None:
            result = cut_spectrum(result, req.band, cov.filename)
        buf = io.BytesIO()
        result.writeto(buf, checksum=True)
    return buf.getvalue()
