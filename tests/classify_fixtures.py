"""Archived spectra made from real templates of the library, for the classify tests.

A demo Phase 3 1D spectrum (``*_sb.fits``, a final 1D science spectrum) gets the
wavelengths and flux of a template epoch redshifted to a known ``z``
(:func:`classify.synth.template_spectrum`): ingested, it is a product whose
type and redshift are known.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from astropy.io import fits

from classify.synth import template_spectrum
from classify.templates import TemplateLibrary, load_library


def template_index(library: TemplateLibrary, sn: str, phase: float) -> int:
    """Return the epoch of supernova ``sn`` nearest ``phase`` days from maximum."""
    rows = np.flatnonzero(library.sn == sn)
    if rows.size == 0:
        raise AssertionError(f"no template {sn} in the library")
    return int(rows[np.argmin(np.abs(library.phase[rows] - phase))])


def phase3_spectra(demo_files: list[Path]) -> list[Path]:
    """Return the demo's Phase 3 1D spectra, one per object."""
    seen: set[str] = set()
    out = []
    for p in demo_files:
        if p.name.endswith("_sb.fits") and p.name.split("_")[0] not in seen:
            seen.add(p.name.split("_")[0])
            out.append(p)
    return out


def write_template_product(src: Path, dst_dir: Path, sn: str, phase: float,
                           z: float, snr: float = 30.0) -> Path:
    """Copy a demo Phase 3 spectrum with a template's spectrum at redshift ``z``."""
    library = load_library()
    spec = template_spectrum(library, template_index(library, sn, phase), z,
                             snr=snr, seed=7, wmin=3700.0, wmax=9200.0)
    dst = dst_dir / src.name
    shutil.copy(src, dst)
    with fits.open(dst, mode="update") as hdul:
        tab = hdul[1]
        n = len(spec.wave)
        unit = tab.columns["FLUX"].unit
        flux = spec.flux * 1e-16
        err = (spec.error if spec.error is not None else spec.flux * 0.03) * 1e-16
        cols = [fits.Column("WAVE", f"{n}E", unit="angstrom",
                            array=[spec.wave.astype(np.float32)]),
                fits.Column("FLUX", f"{n}E", unit=unit,
                            array=[flux.astype(np.float32)]),
                fits.Column("ERR", f"{n}E", unit=unit, array=[err.astype(np.float32)])]
        new = fits.BinTableHDU.from_columns(cols, header=tab.header)
        new.header["NELEM"] = n
        new.header["TDMIN1"] = float(spec.wave[0])
        new.header["TDMAX1"] = float(spec.wave[-1])
        hdul[1] = new
        hdul[0].header["NELEM"] = n
        hdul.flush()
    return dst
