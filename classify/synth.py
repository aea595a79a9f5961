"""Spectra made from the library's templates: known type, phase and redshift.

For tests, the leave-one-out benchmark and demo data: a template epoch's
flattened flux is put back on a smooth continuum, redshifted, optionally diluted
by a host-like continuum, and given Gaussian noise at a chosen signal-to-noise.
:func:`demo_flux` makes the science spectra of ``vo-archive demo``: a known
template epoch, redshift and host light per object and night (:class:`DemoTruth`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from classify.spectrum import Spectrum, checked
from classify.templates import TemplateLibrary, load_library

F64 = npt.NDArray[np.float64]


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


# --- the demo data set's science spectra ----------------------------------------

#: Types of the demo's transients and their shares (most PESSTO classifications
#: are of type Ia), with the phases (days from maximum) their spectra are taken at.
DEMO_TYPES: tuple[tuple[str, float, float, float], ...] = (
    ("Ia", 0.6, -10.0, 30.0), ("II", 0.2, 10.0, 60.0), ("Ib", 0.1, -10.0, 40.0),
    ("Ic", 0.1, -10.0, 40.0))
#: Subtypes the demo's spectra are made of: the common ones (the peculiar ones
#: resemble other types at some phases, and a demo's answers should be clear).
DEMO_SUBTYPES = frozenset({"Ia-norm", "Ia-91T", "Ia-91bg", "IIP", "IIL", "IIn",
                           "Ib-norm", "Ic-norm", "Ic-broad"})
#: Redshifts of the demo's transients (PESSTO's targets are nearby).
DEMO_Z = (0.01, 0.08)
#: Host light, as a share of the supernova's mean flux.
DEMO_HOST = (0.0, 0.4)
#: Least share of an observed range a template epoch must cover.
DEMO_COVERAGE = 0.9


@dataclass(frozen=True, slots=True)
class DemoTruth:
    """What a demo spectrum was made from: template epoch, redshift, host light."""

    template: str
    type: str
    subtype: str
    phase: float
    z: float
    host: float


def _key_rng(seed: int, *key: str) -> np.random.Generator:
    """Return a generator seeded by ``seed`` and text keys (alike in any process)."""
    words = [zlib.crc32(k.encode()) for k in key]
    return np.random.default_rng([seed, *words])


def _coverage(library: TemplateLibrary) -> tuple[F64, F64]:
    """Return each epoch's first and last covered rest wavelength (Å)."""
    nz = library.flux != 0
    lo = np.argmax(nz, axis=1)
    hi = library.nbin - 1 - np.argmax(nz[:, ::-1], axis=1)
    centres = library.w0 * np.exp((np.arange(library.nbin) + 0.5) * library.dwlog)
    return centres[lo], centres[hi]


def demo_truth(library: TemplateLibrary, obj: str, night: str, wmin: float,
               wmax: float, seed: int = 2012) -> tuple[int, DemoTruth]:
    """Choose the template epoch, redshift and host light of a demo spectrum.

    The type, redshift, host light and supernova are the object's (drawn from
    ``seed`` and its name); the epoch is the night's, among those of that type
    (:data:`DEMO_SUBTYPES`) in its phase range that cover at least
    ``DEMO_COVERAGE`` of the observed range ``wmin``-``wmax`` (the object's own
    supernova when it has one).

    Returns
    -------
    tuple
        The epoch's row in the library and the truth.
    """
    rng = _key_rng(seed, obj)
    shares = np.array([t[1] for t in DEMO_TYPES])
    kind, _, pmin, pmax = DEMO_TYPES[int(rng.choice(len(DEMO_TYPES),
                                                    p=shares / shares.sum()))]
    z = round(float(rng.uniform(*DEMO_Z)), 4)
    host = round(float(rng.uniform(*DEMO_HOST)), 2)
    common = np.isin(library.subtype, list(DEMO_SUBTYPES))
    families = np.unique(library.family[(library.type == kind) & common])
    preference = rng.permutation(families)
    lo, hi = _coverage(library)
    rest_lo, rest_hi = wmin / (1 + z), wmax / (1 + z)
    cover = (np.minimum(hi, rest_hi) - np.maximum(lo, rest_lo)).clip(0) / (
        rest_hi - rest_lo)
    ok = (library.type == kind) & common & (library.phase >= pmin) & (
        library.phase <= pmax) & (cover >= DEMO_COVERAGE)
    if not ok.any():  # no epoch of the type covers the range: any type will do
        ok = common & (cover >= DEMO_COVERAGE)
    rank = {f: i for i, f in enumerate(preference.tolist())}
    first = min(rank.get(str(f), len(rank)) for f in library.family[ok])
    fam = np.array([rank.get(str(f), len(rank)) == first for f in library.family])
    rows = np.flatnonzero(ok & fam)
    index = int(_key_rng(seed, obj, night).choice(rows))
    return index, DemoTruth(str(library.sn[index]), str(library.type[index]),
                            str(library.subtype[index]),
                            float(library.phase[index]), z, host)


def demo_flux(wave: F64, obj: str, night: str, seed: int = 2012
              ) -> tuple[F64, DemoTruth]:
    """Return the noiseless flux of a demo science spectrum on ``wave`` (Å).

    A template epoch of the shipped library (:func:`demo_truth`) at the object's
    redshift, on a supernova-like blue continuum, with the host's red
    continuum added; where the template does not reach, the continua alone.
    The flux peaks at 1.
    """
    library = load_library()
    index, truth = demo_truth(library, obj, night, float(wave[0]), float(wave[-1]),
                              seed)
    rest = wave / (1 + truth.z)
    centres = library.w0 * np.exp((np.arange(library.nbin) + 0.5) * library.dwlog)
    flat = library.flux[index].astype(np.float64)
    features = np.interp(np.log(rest), np.log(centres), flat, left=0.0, right=0.0)
    sn = (features + 1.0) * (wave / 5000.0) ** -1.5
    sn = np.maximum(sn, 0.0)
    flux = sn + truth.host * float(np.mean(sn)) * (wave / 5000.0) ** 1.0
    out: F64 = flux / float(np.max(flux))
    return out, truth
