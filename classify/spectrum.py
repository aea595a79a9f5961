"""Read a 1D spectrum to classify: FITS (binary table, 1D image, multispec) or text.

The archive's 1D products come in the layouts described in
``vo_archive/spectra.py``: the ESO Phase 3 binary table (one row of WAVE, FLUX,
ERR arrays) and the pipeline's 1D images along a linear wavelength WCS
(``CRVAL1``, ``CDELT1`` or ``CD1_1``, ``CRPIX1``), possibly IRAF multispec with
bands (spectrum, raw, sky, sigma). Users also upload plain text with two or three
columns: wavelength in Ångström, flux and, optionally, its error.

Every reader ends in :func:`checked`, which refuses what cannot be a spectrum to
classify with a :class:`SpectrumError` that says why.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from astropy.io import fits

Array = npt.NDArray[np.float64]

#: Fewest usable points a spectrum must have.
MIN_POINTS = 20
#: Wavelengths (Å) a ground-based optical/NIR spectrum can have.
WAVE_PLAUSIBLE = (1000.0, 30000.0)
#: Wavelength units in FITS headers, as factors to Ångström.
_UNIT_TO_ANGSTROM = {
    "angstrom": 1.0, "angstroms": 1.0, "a": 1.0, "aa": 1.0, "0.1 nm": 1.0,
    "nm": 10.0, "nanometer": 10.0, "um": 1.0e4, "micron": 1.0e4, "microns": 1.0e4,
    "m": 1.0e10,
}
_WAVE_COLUMNS = ("WAVE", "WAVELENGTH", "LAMBDA", "WAVELENGTHS", "LAM")
_FLUX_COLUMNS = ("FLUX", "FLUX_DENSITY", "F_LAMBDA", "FLUX_REDUCED", "SPEC")
_ERR_COLUMNS = ("ERR", "ERROR", "FLUX_ERR", "SIGMA", "IVAR_ERR", "NOISE")


class SpectrumError(ValueError):
    """The input is not a 1D spectrum that can be classified."""


@dataclass(frozen=True)
class Spectrum:
    """A 1D spectrum: wavelengths (Å, increasing), flux and optional error."""

    wave: Array
    flux: Array
    error: Array | None
    name: str


def checked(wave: npt.ArrayLike, flux: npt.ArrayLike, error: npt.ArrayLike | None,
            name: str) -> Spectrum:
    """Return a :class:`Spectrum` of the finite points, after checking the arrays.

    Parameters
    ----------
    wave, flux, error
        Wavelength (Å), flux and error (or None), of equal length.
    name
        Name of the spectrum (file name, object).

    Returns
    -------
    Spectrum
        The points where wavelength and flux are finite.

    Raises
    ------
    SpectrumError
        If the spectrum is empty, all NaN, too short, not increasing in
        wavelength, or not in Ångström.
    """
    w = np.asarray(wave, dtype=np.float64).reshape(-1)
    f = np.asarray(flux, dtype=np.float64).reshape(-1)
    if w.size == 0 or f.size == 0:
        raise SpectrumError(f"{name}: the spectrum is empty")
    if w.size != f.size:
        raise SpectrumError(f"{name}: {w.size} wavelengths but {f.size} fluxes")
    e = None if error is None else np.asarray(error, dtype=np.float64).reshape(-1)
    if e is not None and e.size != w.size:
        e = None
    good = np.isfinite(w) & np.isfinite(f)
    if not good.any():
        raise SpectrumError(f"{name}: every flux (or wavelength) is NaN or infinite")
    w, f = w[good], f[good]
    if e is not None:
        e = e[good]
        ok = np.isfinite(e) & (e > 0)
        # a point without a usable error gets the largest error of the others
        e = None if ok.sum() < MIN_POINTS else np.where(ok, e, np.max(e[ok]))
    if w.size < MIN_POINTS:
        raise SpectrumError(
            f"{name}: only {w.size} usable points (at least {MIN_POINTS} needed)")
    if not np.all(np.diff(w) > 0):
        raise SpectrumError(f"{name}: the wavelengths do not increase strictly")
    lo, hi = WAVE_PLAUSIBLE
    if w[0] < lo or w[-1] > hi:
        hint = ""
        if w[-1] < 3.0:
            hint = " (they look like microns)"
        elif w[-1] < lo:
            hint = " (they look like nanometres)"
        raise SpectrumError(
            f"{name}: wavelengths {w[0]:.6g}-{w[-1]:.6g} are not optical/NIR "
            f"Ångström ({lo:.0f}-{hi:.0f}){hint}")
    if not np.any(f != 0):
        raise SpectrumError(f"{name}: the flux is zero everywhere")
    return Spectrum(w, f, e, name)


def _unit_factor(unit: object, name: str) -> float:
    if unit is None:
        return 1.0
    text = str(unit).strip().lower()
    if not text:
        return 1.0
    try:
        return _UNIT_TO_ANGSTROM[text]
    except KeyError:
        raise SpectrumError(f"{name}: unknown wavelength unit {unit!r}") from None


def _column(names: list[str], candidates: tuple[str, ...]) -> str | None:
    upper = {n.upper(): n for n in names}
    for c in candidates:
        if c in upper:
            return upper[c]
    return None


def _from_table(hdu: fits.BinTableHDU, name: str) -> Spectrum | None:
    names = list(hdu.columns.names)
    wcol, fcol = _column(names, _WAVE_COLUMNS), _column(names, _FLUX_COLUMNS)
    if wcol is None or fcol is None or hdu.data is None or len(hdu.data) == 0:
        return None
    ecol = _column(names, _ERR_COLUMNS)
    data = hdu.data
    if np.ndim(data[wcol]) == 2:  # one row of arrays (ESO Phase 3)
        wave, flux = data[wcol][0], data[fcol][0]
        err = data[ecol][0] if ecol else None
    else:  # one row per point
        wave, flux = data[wcol], data[fcol]
        err = data[ecol] if ecol else None
    idx = names.index(wcol) + 1
    factor = _unit_factor(hdu.header.get(f"TUNIT{idx}"), name)
    return checked(np.asarray(wave, float) * factor, flux, err, name)


def _linear_axis(h: fits.Header, n: int, name: str) -> Array:
    crval = h.get("CRVAL1")
    step = h.get("CD1_1", h.get("CDELT1"))
    if crval is None or step is None:
        raise SpectrumError(f"{name}: no wavelength axis (CRVAL1 and CDELT1/CD1_1)")
    crpix = float(h.get("CRPIX1", 1.0))
    axis = float(crval) + (np.arange(n, dtype=np.float64) + 1.0 - crpix) * float(step)
    if int(h.get("DC-FLAG", 0)) == 1:  # IRAF: log10 wavelengths
        axis = 10.0 ** axis
    return axis * _unit_factor(h.get("CUNIT1"), name)


def _from_image(h: fits.Header, data: np.ndarray, name: str) -> Spectrum:
    arr = np.asarray(data, dtype=np.float64)
    err = None
    if arr.ndim == 3:  # IRAF multispec (bands, apertures, pixels)
        flux = arr[0, 0, :]
        if arr.shape[0] >= 4:
            err = arr[3, 0, :]
    elif arr.ndim == 2:  # apertures x pixels: the first aperture
        flux = arr[0, :]
    elif arr.ndim == 1:
        flux = arr
    else:
        raise SpectrumError(f"{name}: a {arr.ndim}-dimensional array is no 1D spectrum")
    return checked(_linear_axis(h, flux.size, name), flux, err, name)


def _read_fits(data: bytes, name: str) -> Spectrum:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(data), memmap=False) as hdul:
                for hdu in hdul:
                    if isinstance(hdu, fits.BinTableHDU):
                        spec = _from_table(hdu, name)
                        if spec is not None:
                            return spec
                for hdu in hdul:
                    if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU) and \
                            hdu.data is not None:
                        header = hdu.header
                        if hdu is not hdul[0]:
                            merged = hdul[0].header.copy()
                            merged.update(header)
                            header = merged
                        return _from_image(header, hdu.data, name)
    except SpectrumError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise SpectrumError(f"{name}: unreadable FITS file ({exc})") from exc
    raise SpectrumError(f"{name}: the FITS file holds no spectrum")


def _read_text(data: bytes, name: str) -> Spectrum:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpectrumError(f"{name}: neither FITS nor text") from None
    rows: list[list[float]] = []
    skipped = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        try:
            values = [float(p) for p in parts]
        except ValueError:
            if not rows:  # a header line
                skipped += 1
                continue
            raise SpectrumError(
                f"{name}: line {lineno} is not numbers: {line[:40]!r}") from None
        if len(values) not in (2, 3):
            raise SpectrumError(
                f"{name}: line {lineno} has {len(values)} columns (2 or 3 expected: "
                "wavelength, flux[, error])")
        rows.append(values[:3])
    if not rows:
        if skipped:
            raise SpectrumError(f"{name}: not a spectrum (no rows of numbers: "
                                "wavelength, flux[, error])")
        raise SpectrumError(f"{name}: the spectrum is empty")
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise SpectrumError(f"{name}: rows with different numbers of columns")
    arr = np.array(rows, dtype=np.float64)
    err = arr[:, 2] if width == 3 else None
    return checked(arr[:, 0], arr[:, 1], err, name)


def read_spectrum(source: str | Path | bytes, name: str | None = None) -> Spectrum:
    """Read a spectrum from a file or from its bytes.

    Parameters
    ----------
    source
        A path, or the content of a FITS or text file.
    name
        Name to report (defaults to the file name, or ``"upload"``).

    Returns
    -------
    Spectrum
        The spectrum, finite points only.

    Raises
    ------
    SpectrumError
        If the input is no readable 1D spectrum (see :func:`checked`).
    """
    if isinstance(source, bytes):
        data = source
        label = name or "upload"
    else:
        path = Path(source)
        label = name or path.name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SpectrumError(f"{label}: cannot read ({exc.strerror})") from exc
    if not data.strip():
        raise SpectrumError(f"{label}: the file is empty")
    if data[:9] == b"SIMPLE  =":
        return _read_fits(data, label)
    return _read_text(data, label)
