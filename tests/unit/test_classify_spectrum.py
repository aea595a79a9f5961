"""Reading spectra to classify: the archive's FITS layouts, text, and bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from classify.spectrum import SpectrumError, read_spectrum

WAVE = np.linspace(3400.0, 9200.0, 500)
FLUX = 1e-16 * (1.0 + 0.2 * np.sin(WAVE / 200.0))
ERR = np.full_like(WAVE, 1e-18)


def _fits_bytes(hdus: list[fits.hdu.base.ExtensionHDU]) -> bytes:
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def phase3_table() -> bytes:
    """The ESO Phase 3 binary table, as the archive writes its *_sb.fits."""
    n = WAVE.size
    cols = [
        fits.Column("WAVE", f"{n}E", unit="angstrom", array=[WAVE.astype(np.float32)]),
        fits.Column("FLUX", f"{n}E", array=[FLUX.astype(np.float32)]),
        fits.Column("ERR", f"{n}E", array=[ERR.astype(np.float32)]),
    ]
    tab = fits.BinTableHDU.from_columns(cols, name="PHASE3BINTABLE")
    return _fits_bytes([fits.PrimaryHDU(), tab])


def table_in_nm() -> bytes:
    cols = [fits.Column("WAVE", "D", unit="nm", array=WAVE / 10.0),
            fits.Column("FLUX", "D", array=FLUX)]
    return _fits_bytes([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)])


def image_1d(step_key: str) -> bytes:
    hdu = fits.PrimaryHDU(FLUX.astype(np.float32))
    hdu.header["CRVAL1"] = WAVE[0]
    hdu.header[step_key] = WAVE[1] - WAVE[0]
    hdu.header["CRPIX1"] = 1.0
    return _fits_bytes([hdu])


def multispec() -> bytes:
    """IRAF multispec: bands spectrum, raw, sky, sigma (the pipeline's *_f.fits)."""
    data = np.stack([FLUX, FLUX * 1.02, FLUX * 0.1, ERR]).reshape(4, 1, -1)
    hdu = fits.PrimaryHDU(data.astype(np.float32))
    hdu.header.update({"CRVAL1": WAVE[0], "CD1_1": WAVE[1] - WAVE[0], "CRPIX1": 1.0})
    return _fits_bytes([hdu])


def text(columns: int, header: bool = False) -> bytes:
    arr = np.column_stack([WAVE, FLUX, ERR][:columns])
    out = io.StringIO()
    np.savetxt(out, arr, header="wavelength flux error" if header else "")
    return out.getvalue().encode()


@pytest.mark.parametrize(("data", "has_error"), [
    (phase3_table(), True),
    (image_1d("CDELT1"), False),
    (image_1d("CD1_1"), False),
    (multispec(), True),
    (text(2), False),
    (text(3), True),
    (text(3, header=True), True),
    (table_in_nm(), False),
])
def test_layouts_give_the_same_spectrum(data: bytes, has_error: bool) -> None:
    spec = read_spectrum(data, "s")
    assert spec.name == "s"
    np.testing.assert_allclose(spec.wave, WAVE, rtol=1e-6)
    np.testing.assert_allclose(spec.flux, FLUX, rtol=1e-6)
    assert (spec.error is not None) is has_error
    if spec.error is not None:
        np.testing.assert_allclose(spec.error, ERR, rtol=1e-6)


def test_a_path_is_read_and_named(tmp_path: Path) -> None:
    path = tmp_path / "sn.dat"
    path.write_bytes(text(3))
    spec = read_spectrum(path)
    assert spec.name == "sn.dat" and spec.wave.size == WAVE.size


def test_nan_points_are_dropped() -> None:
    flux = FLUX.copy()
    flux[10:20] = np.nan
    arr = io.StringIO()
    np.savetxt(arr, np.column_stack([WAVE, flux]))
    spec = read_spectrum(arr.getvalue().encode())
    assert spec.wave.size == WAVE.size - 10 and np.all(np.isfinite(spec.flux))


def _txt(wave: np.ndarray, flux: np.ndarray) -> bytes:
    out = io.StringIO()
    np.savetxt(out, np.column_stack([wave, flux]))
    return out.getvalue().encode()


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"   \n\n", "empty"),
    (b"# only a comment\n", "empty"),
    (b"<html><body>not a spectrum</body></html>\n", "not a spectrum"),
    (b"wavelength flux\nabc def\n1 2\nfoo bar\n", "not numbers"),
    (bytes(range(256)) * 4, "neither FITS nor text"),
    (_txt(WAVE, np.full_like(WAVE, np.nan)), "NaN"),
    (_txt(WAVE[::-1], FLUX), "do not increase"),
    (_txt(np.r_[WAVE[:50], WAVE[49:]], np.r_[FLUX[:50], FLUX[49:]]), "do not increase"),
    (_txt(WAVE / 1e4, FLUX), "microns"),
    (_txt(WAVE / 10.0, FLUX), "nanometres"),
    (_txt(WAVE * 1e3, FLUX), "not optical"),
    (_txt(WAVE[:10], FLUX[:10]), "usable points"),
    (_txt(WAVE, np.zeros_like(WAVE)), "zero everywhere"),
    (b"1 2 3 4\n5 6 7 8\n", "columns"),
    (b"3500 1\n3501 2 3\n", "different numbers of columns"),
    (b"SIMPLE  =                    T / truncated FITS", "unreadable FITS"),
    (_fits_bytes([fits.PrimaryHDU(np.zeros((3, 3, 3, 3), np.float32))]),
     "no 1D spectrum"),
    (_fits_bytes([fits.PrimaryHDU(FLUX.astype(np.float32))]), "no wavelength axis"),
    (_fits_bytes([fits.PrimaryHDU()]), "holds no spectrum"),
])
def test_bad_input_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(SpectrumError, match=message):
        read_spectrum(data, "upload")


def test_a_missing_file_is_a_spectrum_error(tmp_path: Path) -> None:
    with pytest.raises(SpectrumError, match="cannot read"):
        read_spectrum(tmp_path / "absent.fits")
