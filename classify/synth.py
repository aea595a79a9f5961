"""Spectra made from the library's templates: known type, phase and redshift.

For tests, the leave-one-out benchmark and demo data: a template epoch's
flattened flux is put back on a smooth continuum, redshifted, optionally diluted
by a host-like continuum, and given Gaussian noise at a chosen signal-to-noise.
"""

from __future__ import annotations

import numpy as np

from classify.spectrum import Spectrum, checked
from classify.templates import TemplateLibrary


def template_spectrum(library: TemplateLibrary, index: int, z: float,
                      snr: float | None = None, seed: int = 0, host: float = 0.0,
                      wmin: float = 3500.0, wmax: float = 9500.0) -> Spectrum:
    """Return template epoch ``index`` as an observed spectrum at redshift ``z``.

    Parameters
    ----------
    library
        The template library.
    index
        Row of the epoch in the library.
    z
        Redshift.
    snr
        Signal-to-noise per bin (None: no noise).
    seed
        Seed of the noise.
    host
        Host light added, as a share of the supernova's mean flux (a smooth red
        continuum).
    wmin, wmax
        Observed wavelength range kept (Å), within the template's coverage.

    Returns
    -------
    Spectrum
        Observed wavelengths (Å), flux in arbitrary units, error if ``snr``.
    """
    nbin, dw = library.nbin, library.dwlog
    rest = library.w0 * np.exp((np.arange(nbin) + 0.5) * dw)
    flat = library.flux[index].astype(np.float64)
    covered = np.flatnonzero(flat != 0)
    sl = slice(covered[0], covered[-1] + 1)
    wave = rest[sl] * (1 + z)
    # a supernova-like blue continuum under the features
    cont = (wave / 5000.0) ** -1.5
    flux = (flat[sl] + 1.0) * cont
    if host:
        flux = flux + host * np.mean(flux) * (wave / 5000.0) ** 1.0
    keep = (wave >= wmin) & (wave <= wmax)
    wave, flux = wave[keep], flux[keep]
    name = f"{library.sn[index]}@{library.phase[index]:+.1f}d,z={z:.3f}"
    if snr is None:
        return checked(wave, flux, None, name)
    rng = np.random.default_rng(seed)
    sigma = np.full_like(flux, np.mean(np.abs(flux)) / snr)
    return checked(wave, flux + rng.normal(0.0, 1.0, flux.size) * sigma, sigma, name)
