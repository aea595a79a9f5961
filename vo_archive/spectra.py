"""Read a 1D spectrum (wavelength, flux, error) from a PESSTO FITS file.

Two layouts occur (``../shared/pessto-data-model.md``): the ESO Phase 3 binary
table (``*_sb.fits``: one row of WAVE, FLUX, ERR arrays) and the pipeline's 1D
images (``*_f.fits``, ``*_ex.fits``: NAXIS1 pixels along a linear wavelength
WCS, IRAF multispec bands: spectrum, raw, sky, sigma). 2D spectra are
collapsed along the slit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from astropy.io import fits


@dataclass(frozen=True)
class Spectrum:
    """A spectrum: wavelengths in Ångström, flux and error in ``flux_unit``."""

    wave: npt.NDArray[np.float64]
    flux: npt.NDArray[np.float64]
    error: npt.NDArray[np.float64] | None
    flux_unit: str
    title: str


class NotASpectrum(ValueError):
    """The file holds no 1D spectrum that can be read."""


def _linear_axis(h: fits.Header, axis: int, n: int) -> npt.NDArray[np.float64]:
    crval = h.get(f"CRVAL{axis}")
    step = h.get(f"CD{axis}_{axis}", h.get(f"CDELT{axis}"))
    if crval is None or step is None:
        raise NotASpectrum(f"no linear wavelength WCS on axis {axis}")
    crpix = float(h.get(f"CRPIX{axis}", 1.0))
    return float(crval) + (np.arange(n, dtype=np.float64) + 1.0 - crpix) * float(step)


def read_spectrum(path: Path) -> Spectrum:
    """Return the spectrum in a FITS file.

    Raises
    ------
    NotASpectrum
        If the file has neither layout.
    """
    with fits.open(path, memmap=False) as hdul:
        primary = hdul[0].header
        title = str(primary.get("OBJECT", path.name))
        unit = str(primary.get("BUNIT", "erg/cm2/s/Angstrom"))
        for hdu in hdul[1:]:
            if isinstance(hdu, fits.BinTableHDU) and "WAVE" in hdu.columns.names:
                row = hdu.data[0]
                err = np.asarray(row["ERR"], float) if "ERR" in hdu.columns.names \
                    else None
                return Spectrum(np.asarray(row["WAVE"], float),
                                np.asarray(row["FLUX"], float), err, unit, title)
        data = hdul[0].data
        if data is None:
            raise NotASpectrum("the file has no data array")
        arr = np.asarray(data, dtype=np.float64)
        if arr.ndim == 3:  # (bands, 1, n): spectrum, raw, sky, sigma
            flux = arr[0, 0, :]
            err = arr[3, 0, :] if arr.shape[0] >= 4 else None
            return Spectrum(_linear_axis(primary, 1, flux.size), flux, err, unit, title)
        if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[0] == 1):
            flux = arr.reshape(-1)
            return Spectrum(
                _linear_axis(primary, 1, flux.size), flux, None, unit, title
            )
        if arr.ndim == 2:
            if int(primary.get("DISPAXIS", 1)) == 2:
                flux = arr.sum(axis=1)
                return Spectrum(_linear_axis(primary, 2, flux.size), flux, None, unit,
                                title)
            flux = arr.sum(axis=0)
            return Spectrum(
                _linear_axis(primary, 1, flux.size), flux, None, unit, title
            )
    raise NotASpectrum(f"cannot read a spectrum from {path.name}")
