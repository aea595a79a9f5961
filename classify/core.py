"""Classify a supernova spectrum by cross-correlation with a template library.

The method is SNID's (Blondin & Tonry 2007, ApJ 666, 1024, §2), after Tonry &
Davis (1979, AJ 84, 1511), as GELATO also uses it (Harutyunyan et al. 2008):

1. rebin the spectrum onto the templates' log-wavelength grid (equal steps in
   ln λ, so that a redshift is a shift), conserving flux;
2. divide by a smooth continuum (a least-squares cubic spline) and subtract one,
   so that only the features are left; taper both ends (cosine bell);
3. band-pass filter in Fourier space (drop what is left of the continuum and the
   pixel noise) and cross-correlate with every template epoch at once (one
   batched FFT product);
4. for each epoch take the highest correlation peak in the redshift range: the
   redshift, the peak's width, the Tonry-Davis ``r = h / (sqrt(2) sigma_a)``
   (peak height over the rms of the correlation's antisymmetric part), the
   overlap ``lap`` of spectrum and shifted template in ln λ, and ``rlap = r·lap``;
5. for the best candidates, correlate again on the overlap only (both spectra
   trimmed to it and tapered anew, SNID §2.3), which gives the final r and lap;
6. matches with ``rlap`` at least the threshold (SNID's default 5) and enough
   overlap are good; the closest of them (by ``rlap·h⁸``, h the correlation's
   height on the overlap: :data:`LIKENESS_POWER`) vote, one per supernova; the
   answer is the type with the largest vote, its subtype, the redshift and age
   from the voters of that type, or "no good match" when there are none. Never a
   forced type.

When the spectrum shows narrow emission lines of its host galaxy at one
redshift (two of [O II], H-beta, [O III], H-alpha), the search is made as SNID
is run with a host redshift: templates within ``HOST_DZ`` of it only, and the
supernova's redshift is its host's. Without a good match there, the free search
stands.

The templates are prepared (tapered, filtered, Fourier transformed) once per
process and library.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property, lru_cache

import numpy as np
import numpy.typing as npt
from scipy.fft import irfft, rfft
from scipy.interpolate import LSQUnivariateSpline
from scipy.ndimage import maximum_filter, median_filter

from classify.spectrum import Spectrum, SpectrumError
from classify.templates import TemplateLibrary, canonical_sn, load_library

CLASSIFIER_VERSION = "snid-xc 1.2"

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Cosine taper at each end, as a share of the covered range (SNID: 5 %).
APODIZE = 0.05
#: Continuum spline intervals over the whole grid (SNID: 13; the .lnw knots agree).
CONTINUUM_INTERVALS = 13
#: Band-pass filter corners, in cycles over the whole grid (SNID: 1, 4, nw/12, nw/10).
FILTER_K = (1.0, 4.0, 1024 / 12, 1024 / 10)
#: Candidates correlated again on their overlap (step 5), best initial rlap first.
RECORRELATE = 300
#: The fewest grid bins a spectrum must cover.
MIN_BINS = 100
#: Relative rms below which a flattened spectrum has no features at all.
FEATURELESS = 1e-5
#: Running windows (bins) of the noise estimate and of the spike filter.
NOISE_WINDOW = 41
SPIKE_WINDOW = 9
#: A bin this many times the local scatter from the running median is a spike.
SPIKE_SIGMA = 5.0
#: Relative noise below which no weighting is needed (S/N 30 per bin).
NOISE_FLOOR = 1.0 / 30
#: Ends of the spectrum with less noise weight than this are cut off.
TRIM_WEIGHT = 0.1
#: The best good matches (one per supernova) that vote on the type.
VOTERS = 5
#: Good matches are ranked for the vote by ``rlap * h**LIKENESS_POWER``: the
#: height h of the correlation on the overlap (how much of the spectrum the
#: template reproduces) counts most, rlap (how distinctly the peak stands out)
#: orders matches of like height. SNID's r alone rewards a peak above a quiet
#: correlation even where the template reproduces less of the spectrum: ranked
#: by rlap, a type Ic is taken for a Ia, a Ia-91bg for a Ic, more often.
#: (Leave-one-out on the whole library at S/N 10, two seeds: 94.6 % Ia or not
#: by rlap, 95.7-95.8 % by this; powers 6-12, 3-7 voters and share powers
#: 0.25-0.35 all give 95.6-95.9 % and keep the OzDES agreement at 35 of 40.)
LIKENESS_POWER = 8.0
#: Each voter's weight is 1/rank over its type's share of the library's
#: supernovae to this power (a common type's many near-matches do not outvote
#: a rare type's close one).
SHARE_POWER = 1.0 / 3.0
#: Lags either side of a peak over which sigma_a is taken, as a share of the grid.
ANTI_SPAN = 0.5
#: Lowest correlation peak of a good match. Pure noise, against five thousand
#: template epochs over a redshift range, reaches peaks of 0.25-0.45 with r of
#: up to 6-8 (sigma_a of a correlation with few independent lags is itself
#: noisy); real matches, even of faint spectra with host light, peak at 0.5-0.95.
#: (Measured on 60 noise spectra and the 40 OzDES spectra.)
H_MIN = 0.5
#: Filtered power a spectrum must have, in units of its noise's, to be classified
#: (white noise: 0.9-1.6; the faintest OzDES spectra 1.8-3, most 4-300).
FEATURE_POWER = 2.0
#: A spectrum shorter than the minimum overlap (lapmin, in ln λ) can never reach
#: it. Its matches may then overlap it over this share of its own length instead,
#: when its features stand this many times above its noise's power: noise over
#: 900-2,500 Å reaches at most 5 (and, being short, an r of 20 and more; measured
#: on 300 such spectra), the template epochs at S/N 10 at least 15, most 300.
SHORT_SHARE = 0.9
SHORT_POWER = 20.0
#: Redshift and age: weighted by rlap to this power (the best matches count most).
WEIGHT_POWER = 2.0
#: Highest redshift searched.
ZMAX_LIMIT = 1.5
#: Tonry & Davis (1979): redshift error ≈ K·FWHM/(1 + r).
TD_ERROR_K = 3.0 / 8.0
#: The strongest narrow emission lines of a star-forming host galaxy ([O II]
#: 3727, H-beta, [O III] 5007, H-alpha; rest wavelengths in air, Å), one per
#: group. A redshift needs two groups. Close companions ([N II] beside H-alpha,
#: [O III] 4959, [S II]) are left out: a pair of them, or one of them taken for
#: its neighbour, gives a redshift a little off from a single line and a sky
#: line or a supernova's feature (measured on noisy templates with added lines).
HOST_LINES = ((3727.4,), (4861.3,), (5006.8,), (6562.8,))
#: Significance of the strongest host line and of a line of a second group (a
#: 4 sigma peak of Gaussian noise turns up by chance once in 30,000 trials: a few
#: hundred candidate redshifts times a few groups stay well below one).
LINE_SIGMA = (5.0, 4.0)
#: Half width (Å) of the box a line's flux is summed over (unresolved lines of
#: a low-resolution spectrograph), the continuum's running-median width (Å,
#: wider than any host line, narrower than any supernova feature), and the
#: largest distance (Å) of a line from its expected place.
LINE_HALF_WIDTH = 4.0
LINE_CONTINUUM = 60.0
LINE_TOLERANCE = 3.0
#: Coarsest sampling (Å per pixel) at which a host line can be told from the
#: emission of a supernova (1000 km/s and more: 20 Å at 6000 Å); the templates'
#: own grid, 7-11 Å per bin, is coarser.
LINE_MAX_STEP = 5.0
#: Peaks tried as each host line, strongest first.
LINE_SEEDS = 50
#: With a host redshift from its lines, templates are searched within this of it
#: (a few times SNID's typical redshift error of 0.005).
HOST_DZ = 0.02


@dataclass(frozen=True, slots=True)
class ClassifyOptions:
    """What to search: redshift and age ranges, types, wavelengths, thresholds."""

    zmin: float = -0.01
    zmax: float = 1.2
    #: a fixed redshift (e.g. the host's): no redshift search
    z: float | None = None
    agemin: float | None = None
    agemax: float | None = None
    #: main types (Ia, Ib, Ic, II) or subtypes (Ia-91T, IIP) to compare with
    types: tuple[str, ...] | None = None
    #: observed wavelength range to use (Å)
    wmin: float | None = None
    wmax: float | None = None
    rlap_min: float = 5.0
    #: least overlap in ln λ (SNID's lapmin)
    lap_min: float = 0.4
    top: int = 10
    #: supernovae to leave out (template names, in any spelling)
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Check the ranges."""
        if self.z is not None and not -0.01 <= self.z <= ZMAX_LIMIT:
            raise ValueError(f"z={self.z} is outside -0.01..{ZMAX_LIMIT}")
        if not -0.01 <= self.zmin < self.zmax <= ZMAX_LIMIT:
            raise ValueError(f"the redshift range {self.zmin}..{self.zmax} is not "
                             f"an interval within -0.01..{ZMAX_LIMIT}")
        if self.agemin is not None and self.agemax is not None and \
                self.agemin > self.agemax:
            raise ValueError("agemin is above agemax")
        if self.wmin is not None and self.wmax is not None and self.wmin >= self.wmax:
            raise ValueError("wmin is not below wmax")
        if self.rlap_min < 0 or self.lap_min < 0:
            raise ValueError("rlap_min and lap_min must not be negative")
        if not 1 <= self.top <= 1000:
            raise ValueError("top must be 1..1000")


@dataclass(frozen=True, slots=True)
class Match:
    """One template epoch's best correlation with the spectrum."""

    template: str
    type: str
    subtype: str
    phase: float
    z: float
    z_err: float
    #: FWHM of the correlation peak, in redshift
    width: float
    r: float
    lap: float
    rlap: float
    good: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classification of one spectrum."""

    type: str | None
    subtype: str | None
    #: share of the good matches that have this type
    fraction: float | None
    z: float | None
    z_err: float | None
    age: float | None
    age_err: float | None
    #: rlap of the best match (good or not)
    rlap: float | None
    #: False: no good match, and no type
    good: bool
    matches: list[Match] = field(default_factory=list)
    n_good: int = 0
    classifier_version: str = CLASSIFIER_VERSION
    library_version: str = ""
    spectrum: str = ""


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def verdict_to_dict(verdict: Verdict) -> dict[str, object]:
    """Return the verdict as JSON-safe values (no NaN or infinity: None)."""
    out = _finite(asdict(verdict))
    assert isinstance(out, dict)  # noqa: S101 - asdict returns a dict
    return out


# --- the numerical core -------------------------------------------------------


def _bandpass(n: int, nbin: int) -> F64:
    """Return SNID's band-pass weights for an rFFT of length ``n``."""
    k = np.arange(n // 2 + 1) * (nbin / n)  # cycles over the template grid
    k1, k2, k3, k4 = FILTER_K
    w = np.ones_like(k)
    w[k < k1] = 0.0
    up = (k >= k1) & (k < k2)
    w[up] = 0.5 * (1 - np.cos(np.pi * (k[up] - k1) / (k2 - k1)))
    down = (k > k3) & (k <= k4)
    w[down] = 0.5 * (1 + np.cos(np.pi * (k[down] - k3) / (k4 - k3)))
    w[k > k4] = 0.0
    return w


def _taper(nbin: int, lo: I64, hi: I64) -> F32:
    """Return cosine-bell weights, one row per [lo, hi] range (inclusive)."""
    i = np.arange(nbin, dtype=np.float32)[None, :]
    lo_f = lo.astype(np.float32)[:, None]
    span = np.maximum(hi - lo, 1).astype(np.float32)[:, None]
    x = (i - lo_f) / span
    w = np.clip(np.minimum(x, 1 - x) / APODIZE, 0.0, 1.0)
    w = 0.5 * (1 - np.cos(np.pi * w))
    w[(x < 0) | (x > 1)] = 0.0
    out: F32 = w.astype(np.float32)
    return out


def _support(flux: F32) -> tuple[I64, I64]:
    nz = flux != 0
    lo = np.argmax(nz, axis=1).astype(np.int64)
    hi = (flux.shape[1] - 1 - np.argmax(nz[:, ::-1], axis=1)).astype(np.int64)
    return lo, hi


@dataclass(frozen=True)
class Prepared:
    """A library in Fourier space: filtered, tapered, normalised, conjugated."""

    library: TemplateLibrary
    n: int
    filt: F64
    conj: npt.NDArray[np.complex64]
    lo: I64
    hi: I64
    ok: npt.NDArray[np.bool_]


def _transform(rows: F32, filt: F64, n: int) -> tuple[npt.NDArray[np.complex64], F64]:
    """Return the filtered rFFT of each row and the norm of each filtered row."""
    spec = rfft(rows, n=n, axis=1) * filt[None, :].astype(np.float32)
    # Parseval for a real signal's rFFT: both ends once, the rest twice
    power = 2 * np.sum(np.abs(spec) ** 2, axis=1) - np.abs(spec[:, 0]) ** 2
    if n % 2 == 0:
        power -= np.abs(spec[:, -1]) ** 2
    norm = np.sqrt(np.maximum(power, 0.0) / n)
    return spec.astype(np.complex64), norm.astype(np.float64)


@lru_cache(maxsize=4)
def prepare(library: TemplateLibrary) -> Prepared:
    """Return the library tapered, filtered and in Fourier space (once per process)."""
    nbin = library.nbin
    # zero-padded by half a grid: no wrap-around for redshifts up to ZMAX_LIMIT
    # (a shift of z=1.5 is 0.66 of the grid; 1536 is a fast FFT length)
    n = nbin + nbin // 2
    filt = _bandpass(n, nbin)
    lo, hi = _support(library.flux)
    rows = library.flux * _taper(nbin, lo, hi)
    spec, norm = _transform(rows, filt, n)
    ok = (norm > 0) & (hi - lo >= 16)
    conj = np.conj(spec) / np.where(ok, norm, 1.0)[:, None].astype(np.float32)
    return Prepared(library, n, filt, conj.astype(np.complex64), lo, hi, ok)


def rebin_log(spectrum: Spectrum, library: TemplateLibrary,
              wmin: float | None = None, wmax: float | None = None
              ) -> tuple[F64, int, int]:
    """Rebin a spectrum onto the library's log-wavelength grid, conserving flux.

    Returns
    -------
    tuple
        The rebinned flux (zero outside), the first and last covered bins.

    Raises
    ------
    SpectrumError
        If the spectrum covers too little of the grid.
    """
    nbin, dw = library.nbin, library.dwlog
    edges = library.w0 * np.exp(np.arange(nbin + 1) * dw)
    w, f = spectrum.wave, spectrum.flux
    lo_w = max(w[0], wmin if wmin is not None else -np.inf)
    hi_w = min(w[-1], wmax if wmax is not None else np.inf)
    first = int(np.searchsorted(edges, lo_w, side="left"))
    last = int(np.searchsorted(edges, hi_w, side="right")) - 2
    if last - first + 1 < MIN_BINS:
        raise SpectrumError(
            f"{spectrum.name}: the spectrum ({w[0]:.0f}-{w[-1]:.0f} Å) covers too "
            f"little of the templates' {library.w0:.0f}-{library.w1:.0f} Å range")
    # the integral of the flux from the first point, at every edge (trapezoids)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(w))])
    e = edges[first:last + 2]
    integral = np.interp(e, w, cum)
    out = np.zeros(nbin)
    out[first:last + 1] = np.diff(integral) / np.diff(e)
    return out, first, last


def _running_median(x: F64, width: int) -> F64:
    out: F64 = median_filter(x, size=width, mode="nearest")
    return out


@dataclass(frozen=True)
class Flattened:
    """A spectrum ready to correlate: features only, with weights and noise."""

    #: continuum-divided flux less one (zero outside [lo, hi])
    flux: F64
    #: weight of each bin, 1/noise up to 1 (zero outside)
    weight: F64
    #: noise of the flattened flux in each bin (zero outside)
    noise: F64
    lo: int
    hi: int


def flatten(flux: F64, first: int, last: int) -> Flattened:
    """Remove the continuum of a rebinned spectrum; weight it by its noise.

    The flux over [first, last] is cleaned of narrow spikes (sky-line residuals,
    host emission lines, cosmic rays: more than ``SPIKE_SIGMA`` local noise from a
    running median narrower than any supernova feature), divided by a least-squares
    cubic spline continuum, less one. Where the noise of the result is above its
    median (the faint ends of a spectrum, the blue end of a red one), it is
    weighted down by (median noise / noise)^2, the weight of a matched filter; the
    ends where the weight falls below ``TRIM_WEIGHT`` are cut off.

    Returns
    -------
    Flattened
        The flattened spectrum, its weights and noise, the first and last bins
        (a spectrum with nothing to correlate is all zero).
    """
    x = np.arange(first, last + 1, dtype=np.float64)
    y = flux[first:last + 1].copy()
    out = np.zeros_like(flux)
    out_w = np.zeros_like(flux)
    out_n = np.zeros_like(flux)
    nothing = Flattened(out, out_w, out_n, first, last)
    # the local noise, from second differences (white noise: var = 1.5 sigma^2)
    d2 = np.zeros_like(y)
    d2[1:-1] = y[1:-1] - 0.5 * (y[:-2] + y[2:])
    d2[0], d2[-1] = d2[1], d2[-2]
    noise = 1.4826 / math.sqrt(1.5) * _running_median(np.abs(d2), NOISE_WINDOW)
    smooth = _running_median(y, SPIKE_WINDOW)
    # the scatter about the running median: noise, and the narrowest features of
    # a spectrum without noise, which must stay
    resid = np.abs(y - smooth)
    scatter = 1.4826 * _running_median(resid, NOISE_WINDOW)
    spikes = resid > SPIKE_SIGMA * np.maximum(scatter, 1e-300)
    y[spikes] = smooth[spikes]
    # SNID's knot spacing (13 intervals over the whole grid), whatever the coverage
    intervals = max(round((x[-1] - x[0]) / (flux.size / CONTINUUM_INTERVALS)), 2)
    knots = np.linspace(x[0], x[-1], intervals + 1)[1:-1]
    try:
        cont = LSQUnivariateSpline(x, y, knots, k=3)(x)
    except ValueError:
        cont = np.full_like(y, np.mean(y))
    scale = np.max(np.abs(cont))
    if not np.isfinite(scale) or scale == 0:
        return nothing
    cont = np.maximum(cont, 0.05 * scale)
    flat = y / cont - 1.0
    rel_noise = noise / cont
    ref = max(float(np.median(rel_noise)), NOISE_FLOOR)
    weight = np.clip(ref / np.maximum(rel_noise, 1e-300), 0.0, 1.0)
    usable = np.flatnonzero(weight**2 >= TRIM_WEIGHT)
    if usable.size < MIN_BINS:
        return nothing
    lo, hi = int(usable[0]), int(usable[-1])
    flat, weight = flat[lo:hi + 1], weight[lo:hi + 1]
    flat -= np.average(flat, weights=weight)
    if np.sqrt(np.mean(flat**2)) < FEATURELESS:
        return nothing  # rounding errors of a featureless spectrum
    out[first + lo:first + hi + 1] = flat
    out_w[first + lo:first + hi + 1] = weight
    out_n[first + lo:first + hi + 1] = rel_noise[lo:hi + 1]
    return Flattened(out, out_w, out_n, first + lo, first + hi)


def _box_sum(x: F64, half: int) -> F64:
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(x.size)
    lo, hi = np.maximum(i - half, 0), np.minimum(i + half + 1, x.size)
    out: F64 = c[hi] - c[lo]
    return out


def host_redshift(spectrum: Spectrum, zmin: float, zmax: float
                  ) -> tuple[float, float] | None:
    """Return the redshift of the host galaxy's narrow emission lines, and its error.

    Narrow lines ([O II], H-beta, [O III], H-alpha with [N II], [S II]) stand on a star-
    forming host's light under many supernova spectra; they give its redshift to
    a few 1e-4, as surveys measure host redshifts. A line is a local maximum of
    the flux above a running median, summed over a box of a resolution element,
    in units of its noise (from the local scatter of the flux or the spectrum's
    error, scaled up if the sums scatter more). A redshift needs a
    line of ``LINE_SIGMA[0]`` and one of another group of ``LINE_SIGMA[1]``; of
    several, the one with the most groups, then the largest total significance.

    Returns
    -------
    tuple or None
        The redshift (mean of the lines' redshifts, weighted by significance
        squared) and its error (their scatter, at least the tolerance's), or None.
    """
    w, f = spectrum.wave, spectrum.flux
    if w.size < 3 * MIN_BINS:
        return None
    step = float(np.median(np.diff(w)))
    if not 0 < step <= LINE_MAX_STEP:
        return None
    width = max(round(LINE_CONTINUUM / step) | 1, 5)
    resid = f - median_filter(f, size=width, mode="nearest")
    half = max(round(LINE_HALF_WIDTH / step), 1)
    # against the flux just beside it (an annulus 2-5 half widths away), so that
    # the peak of a supernova's broad feature, whose sides stand as high, is no line
    offsets = np.abs(np.arange(-5 * half, 5 * half + 1))
    beside = median_filter(resid, footprint=(offsets >= 2 * half), mode="nearest")
    box = _box_sum(resid - beside, half)
    # a pixel's noise: the flux's local scatter about the running median, or the
    # spectrum's error where that says more (sky lines); at most S/N 1000
    pixel = 1.4826 * median_filter(np.abs(resid), size=width, mode="nearest")
    if spectrum.error is not None:
        pixel = np.maximum(pixel, spectrum.error)
    pixel = np.maximum(pixel, 1e-3 * float(np.median(np.abs(f))))
    noise = np.sqrt(_box_sum(pixel**2, half))
    # neighbouring pixels of a resampled spectrum share their noise: the box
    # sums then scatter more than independent pixels would give
    shared = 1.4826 * float(np.median(np.abs(box - np.median(box)))) / float(
        np.median(noise))
    noise *= max(shared, 1.0)
    sig = box / np.maximum(noise, 1e-300)
    peak = sig >= maximum_filter(sig, size=2 * half + 1, mode="nearest")
    peak &= sig >= LINE_SIGMA[1]
    at = np.flatnonzero(peak)
    if at.size < 2 or not (sig[at] >= LINE_SIGMA[0]).any():
        return None
    p_wave, p_sig = w[at], sig[at]  # in increasing wavelength
    # every strong peak (the strongest LINE_SEEDS) as every line: the redshifts
    seeds = np.argsort(-p_sig, kind="stable")[:LINE_SEEDS]
    seeds = seeds[p_sig[seeds] >= LINE_SIGMA[0]]
    lines = np.array([line for group in HOST_LINES for line in group])
    z = (p_wave[seeds][:, None] / lines[None, :] - 1).ravel()
    z = z[(z >= zmin) & (z <= zmax)]
    if z.size == 0:
        return None
    tolerance = max(LINE_TOLERANCE, 1.5 * step)
    # each group's line found at each redshift: its significance and redshift
    group_sig = np.zeros((len(HOST_LINES), z.size))
    group_z = np.zeros((len(HOST_LINES), z.size))
    for g, group in enumerate(HOST_LINES):
        for line in group:
            expected = line * (1 + z)
            k = np.clip(np.searchsorted(p_wave, expected), 1, at.size - 1)
            nearer = np.abs(p_wave[k - 1] - expected) < np.abs(p_wave[k] - expected)
            k = np.where(nearer, k - 1, k)
            hit = np.where(np.abs(p_wave[k] - expected) <= tolerance, p_sig[k], 0.0)
            better = hit > group_sig[g]
            group_sig[g] = np.where(better, hit, group_sig[g])
            group_z[g] = np.where(better, p_wave[k] / line - 1, group_z[g])
    groups = (group_sig > 0).sum(axis=0)
    if groups.max() < 2:
        return None
    # the most groups, then the largest total significance
    best = int(np.lexsort((group_sig.sum(axis=0), groups))[-1])
    sigs, zs = group_sig[:, best], group_z[:, best]
    zs, wts = zs[sigs > 0], sigs[sigs > 0] ** 2
    z_host = float(np.average(zs, weights=wts))
    spread = float(np.sqrt(np.average((zs - z_host) ** 2, weights=wts)))
    return z_host, max(spread, LINE_TOLERANCE / 5000.0 * (1 + z_host))


def _select(prep: Prepared, options: ClassifyOptions) -> npt.NDArray[np.intp]:
    lib = prep.library
    keep = prep.ok.copy()
    if options.types:
        wanted = set(options.types)
        keep &= np.isin(lib.type, list(wanted)) | np.isin(lib.subtype, list(wanted))
    if options.agemin is not None:
        keep &= lib.phase >= options.agemin
    if options.agemax is not None:
        keep &= lib.phase <= options.agemax
    if options.exclude:
        gone = [canonical_sn(n) for n in options.exclude]
        keep &= ~np.isin(lib.family, gone)
    return np.flatnonzero(keep)


@dataclass(frozen=True)
class _Peaks:
    lag: F64
    h: F64
    width: F64
    r: F64


def _window_max(c: F32, lag_lo: int, lag_hi: int) -> tuple[I64, F32]:
    """Return each row's lag of the highest correlation in [lag_lo, lag_hi], and it."""
    n = c.shape[1]
    rows = np.arange(c.shape[0])
    parts = []  # (first lag, view) pieces of the window, without copying
    if lag_lo < 0:
        parts.append((lag_lo, c[:, n + lag_lo:n + min(lag_hi, -1) + 1]))
    if lag_hi >= 0:
        start = max(lag_lo, 0)
        parts.append((start, c[:, start:lag_hi + 1]))
    best_lag = np.zeros(c.shape[0], dtype=np.int64)
    best_h = np.full(c.shape[0], -np.inf, dtype=np.float32)
    for start, view in parts:
        j = np.argmax(view, axis=1)
        h = view[rows, j]
        better = h > best_h
        best_lag = np.where(better, start + j, best_lag)
        best_h = np.where(better, h, best_h)
    return best_lag, best_h


def _is_peak(c: F32, p: I64) -> npt.NDArray[np.bool_]:
    """Return whether each row's correlation has a local maximum at lag ``p``.

    The highest value of a window can sit on its edge, on the slope of a peak
    outside the redshift range: that is no match.
    """
    n = c.shape[1]
    rows = np.arange(c.shape[0])
    here = c[rows, p % n]
    out: npt.NDArray[np.bool_] = (here >= c[rows, (p - 1) % n]) & (
        here >= c[rows, (p + 1) % n])
    return out


def _measure(c: F32, p: I64, nbin: int, span: I64) -> _Peaks:
    """Measure each row's correlation peak at lag ``p``: position, height, width, r.

    sigma_a is taken over ``span`` lags either side of the peak.
    """
    n = c.shape[1]
    rows = np.arange(c.shape[0])
    y0 = c[rows, p % n].astype(np.float64)
    ym = c[rows, (p - 1) % n].astype(np.float64)
    yp = c[rows, (p + 1) % n].astype(np.float64)
    curv = ym - 2 * y0 + yp
    safe = np.where(curv < 0, curv, -1e-12)
    delta = np.clip(0.5 * (ym - yp) / safe, -0.5, 0.5)
    h = y0 - 0.25 * (ym - yp) * delta
    # a Gaussian of the same height and curvature: FWHM = 2.3548 sigma
    sigma = np.sqrt(np.clip(-h / safe, 0.25, float(nbin) ** 2))
    width = 2.3548 * sigma
    # Tonry & Davis (1979) section III: sigma_a, rms of the antisymmetric part about
    # the peak, over half a grid either side (a correlation of SNID's unpadded length)
    t = np.arange(1, int(span.max()) + 1)
    plus = c[rows[:, None], (p[:, None] + t[None, :]) % n]
    minus = c[rows[:, None], (p[:, None] - t[None, :]) % n]
    anti = np.where(t[None, :] <= span[:, None], plus - minus, 0.0)
    sigma_a = np.sqrt(np.einsum("ij,ij->i", anti, anti, dtype=np.float64)
                      / (2 * span))
    r = h / (np.sqrt(2.0) * np.maximum(sigma_a, 1e-12))
    return _Peaks(p + delta, h, width, r)


def _overlap(s_lo: int, s_hi: int, t_lo: I64, t_hi: I64, lag: F64) -> F64:
    """Return the overlap in bins of the spectrum and each shifted template."""
    lo = np.maximum(s_lo, t_lo + lag)
    hi = np.minimum(s_hi, t_hi + lag)
    out: F64 = np.maximum(hi - lo, 0.0)
    return out


def _recorrelate(prep: Prepared, flat: F64, weight: F64, s_lo: int, s_hi: int,
                 idx: npt.NDArray[np.intp], lag: F64, lag_lo: int, lag_hi: int,
                 ) -> tuple[_Peaks, F64]:
    """Correlate again on the overlap only (SNID §2.3); return peaks and overlaps.

    Spectrum and template both get the spectrum's noise weight 1/noise (shifted
    to the template's bins), so that the product is weighted by 1/noise^2 and a
    perfect match still correlates 1.
    """
    lib = prep.library
    nbin, n = lib.nbin, prep.n
    shift = np.rint(lag).astype(np.int64)
    t_lo, t_hi = prep.lo[idx], prep.hi[idx]
    lo = np.maximum(s_lo, t_lo + shift)  # overlap, in the spectrum's bins
    hi = np.minimum(s_hi, t_hi + shift)
    hi = np.maximum(hi, lo + 16)
    bins = np.arange(nbin)[None, :]
    w32 = weight.astype(np.float32)
    inside = (bins >= lo[:, None]) & (bins <= hi[:, None])
    spec_rows = np.where(inside, flat[None, :], 0.0).astype(np.float32)
    spec_rows = _demean(spec_rows, inside) * _taper(nbin, lo, hi) * w32[None, :]
    # the template's part of the overlap, in its own bins
    tlo, thi = lo - shift, hi - shift
    t_inside = (bins >= tlo[:, None]) & (bins <= thi[:, None])
    tmpl_rows = np.where(t_inside, lib.flux[idx], 0.0).astype(np.float32)
    # the spectrum's weight at the template's bins: weight[bin + shift]
    src = bins + shift[:, None]
    t_weight = np.where((src >= 0) & (src < nbin), w32[np.clip(src, 0, nbin - 1)],
                        np.float32(0.0))
    tmpl_rows = _demean(tmpl_rows, t_inside) * _taper(nbin, tlo, thi) * t_weight
    s_spec, s_norm = _transform(spec_rows, prep.filt, n)
    t_spec, t_norm = _transform(tmpl_rows, prep.filt, n)
    denom = np.maximum(s_norm * t_norm, 1e-30)[:, None].astype(np.float32)
    c = irfft(s_spec * np.conj(t_spec) / denom, n=n, axis=1, overwrite_x=True)
    # the peak near the first pass's shift
    # sigma_a over half a grid either side (SNID's correlation, of one grid,
    # goes round in half a grid either way)
    span = np.full(idx.size, int(nbin * ANTI_SPAN), dtype=np.int64)
    peaks = _peaks_near(c, shift, lag_lo, lag_hi, nbin, span)
    overlap = _overlap(s_lo, s_hi, prep.lo[idx], prep.hi[idx], peaks.lag)
    return peaks, overlap


def _demean(rows: F32, inside: npt.NDArray[np.bool_]) -> F32:
    count = np.maximum(inside.sum(axis=1), 1)
    mean = rows.sum(axis=1) / count
    return np.where(inside, rows - mean[:, None], 0.0).astype(np.float32)


def _peaks_near(c: F32, shift: I64, lag_lo: int, lag_hi: int, nbin: int,
                span: I64) -> _Peaks:
    """Like :func:`_peaks`, within 8 bins of each row's expected shift."""
    rows = np.arange(c.shape[0])
    off = np.arange(-8, 9)
    lags = np.clip(shift[:, None] + off[None, :], lag_lo, lag_hi)
    j = np.argmax(c[rows[:, None], lags % c.shape[1]], axis=1)
    best = lags[rows, j]
    peaks = _measure(c, best, nbin, span)
    h = np.where(_is_peak(c, best), peaks.h, 0.0)
    return _Peaks(peaks.lag, h, peaks.width, peaks.r)


def _weighted_stats(values: F64, weights: F64) -> tuple[float, float]:
    """Return the weighted median and the weighted rms about it."""
    order = np.argsort(values)
    v, w = values[order], weights[order] / np.sum(weights)
    median = float(v[np.searchsorted(np.cumsum(w), 0.5)])
    if values.size < 2:
        return median, 0.0
    var = float(np.sum(w * (v - median) ** 2))
    return median, math.sqrt(max(var, 0.0))


def classify_spectrum(spectrum: Spectrum,
                      options: ClassifyOptions | None = None,
                      library: TemplateLibrary | None = None) -> Verdict:
    """Classify a spectrum against the template library.

    Parameters
    ----------
    spectrum
        The spectrum (observed wavelengths in Å).
    options
        Ranges, types and thresholds; the defaults of :class:`ClassifyOptions`.
    library
        The template library; the shipped one by default.

    Returns
    -------
    Verdict
        The type, redshift and age, or "no good match" (``good`` False).

    Raises
    ------
    SpectrumError
        If the spectrum covers too little of the templates' wavelength range.
    """
    opts = options or ClassifyOptions()
    lib = library or load_library()
    prep = prepare(lib)
    nbin = lib.nbin
    flux, s_lo, s_hi = rebin_log(spectrum, lib, opts.wmin, opts.wmax)
    flattened = flatten(flux, s_lo, s_hi)
    flat, weight, s_lo, s_hi = (flattened.flux, flattened.weight, flattened.lo,
                                flattened.hi)
    idx = _select(prep, opts)
    empty = Verdict(None, None, None, None, None, None, None, None, False,
                    library_version=lib.version, spectrum=spectrum.name)
    taper = _taper(nbin, np.array([s_lo]), np.array([s_hi]))[0]
    # a matched filter: the product weighted by 1/noise^2 (the template has none)
    s_spec, s_norm = _transform((flat * weight**2 * taper)[None, :].astype(np.float32),
                                prep.filt, prep.n)
    if idx.size == 0 or not s_norm[0] > 0:
        return empty
    # features above the noise? The filtered power of the spectrum against what
    # its noise alone would give through the same filter (white noise keeps the
    # filter's mean power gain): a spectrum of noise has nothing to classify
    gain = float(np.mean(prep.filt**2))
    noise_power = gain * float(np.sum((flattened.noise * weight**2 * taper) ** 2))
    if s_norm[0] ** 2 < FEATURE_POWER * noise_power:
        return replace(empty, rlap=0.0)
    lap_min = opts.lap_min
    if s_norm[0] ** 2 >= SHORT_POWER * noise_power:
        lap_min = min(lap_min, SHORT_SHARE * (s_hi - s_lo) * lib.dwlog)
    search = _Search(prep, idx, s_spec[0] / np.float32(s_norm[0]), flattened, opts,
                     spectrum.name, lap_min)
    if opts.z is None:
        host = host_redshift(_cropped(spectrum, opts.wmin, opts.wmax), opts.zmin,
                             opts.zmax)
        if host is not None:
            # SNID run at the host's redshift: templates near it only; the
            # supernova's redshift is its host's (a free search if none is good)
            z_host, z_host_err = host
            near = search.run(max(opts.zmin, z_host - HOST_DZ),
                              min(opts.zmax, z_host + HOST_DZ), None)
            if near.good:
                return replace(near, z=round(z_host, 5), z_err=round(z_host_err, 5))
    return search.run(opts.zmin, opts.zmax, opts.z)


def _cropped(spectrum: Spectrum, wmin: float | None, wmax: float | None) -> Spectrum:
    if wmin is None and wmax is None:
        return spectrum
    keep = (spectrum.wave >= (wmin if wmin is not None else -np.inf)) & (
        spectrum.wave <= (wmax if wmax is not None else np.inf))
    return Spectrum(spectrum.wave[keep], spectrum.flux[keep],
                    None if spectrum.error is None else spectrum.error[keep],
                    spectrum.name)


@dataclass(frozen=True)
class _Search:
    """A flattened spectrum against the selected templates, over a redshift range."""

    prep: Prepared
    idx: npt.NDArray[np.intp]
    #: the spectrum's filtered transform over its norm
    spec: npt.NDArray[np.complex64]
    flattened: Flattened
    opts: ClassifyOptions
    name: str
    #: the least overlap of a good match: ``opts.lap_min``, or less for a short
    #: spectrum with strong features (:data:`SHORT_SHARE`)
    lap_min: float

    @cached_property
    def correlation(self) -> F32:
        """Return the correlation with every selected epoch (computed once)."""
        prep, idx = self.prep, self.idx
        conj = prep.conj if idx.size == len(prep.library) else prep.conj[idx]
        c: F32 = irfft(conj * self.spec[None, :], n=prep.n, axis=1, overwrite_x=True)
        return c

    def run(self, zmin: float, zmax: float, z_fixed: float | None) -> Verdict:
        """Correlate over [zmin, zmax] (or at ``z_fixed``); return the verdict."""
        prep, idx, opts, name = self.prep, self.idx, self.opts, self.name
        lib = prep.library
        dw = lib.dwlog
        flat, weight = self.flattened.flux, self.flattened.weight
        s_lo, s_hi = self.flattened.lo, self.flattened.hi
        if z_fixed is not None:
            centre = math.log1p(z_fixed) / dw
            lag_lo, lag_hi = math.floor(centre) - 1, math.ceil(centre) + 1
        else:
            lag_lo = math.floor(math.log1p(zmin) / dw)
            lag_hi = math.ceil(math.log1p(zmax) / dw)
        c = self.correlation
        lag0, h0 = _window_max(c, lag_lo, lag_hi)
        h0 = np.where(_is_peak(c, lag0), h0, 0.0)
        lap0 = _overlap(s_lo, s_hi, prep.lo[idx], prep.hi[idx],
                        lag0.astype(np.float64))
        score = np.where(h0 > 0, h0 * lap0, 0.0)
        # step 5: the best candidates again, on their overlap only; r from there
        order = np.argsort(-score, kind="stable")[:RECORRELATE]
        cand = idx[order]
        peaks, overlap = _recorrelate(prep, flat, weight, s_lo, s_hi, cand,
                                      lag0[order].astype(np.float64), lag_lo, lag_hi)
        lap2 = overlap * dw
        rlap2 = np.where(peaks.h > 0, peaks.r * lap2, 0.0)
        z = np.exp(peaks.lag * dw) - 1
        if z_fixed is not None:
            z = np.full_like(z, z_fixed)
        width_z = (1 + z) * peaks.width * dw
        z_err = TD_ERROR_K * width_z / (1 + np.maximum(peaks.r, 0))
        good = (rlap2 >= opts.rlap_min) & (lap2 >= self.lap_min) & (peaks.h >= H_MIN)
        rank = np.argsort(-rlap2, kind="stable")
        matches = [
            Match(template=str(lib.sn[cand[i]]), type=str(lib.type[cand[i]]),
                  subtype=str(lib.subtype[cand[i]]), phase=float(lib.phase[cand[i]]),
                  z=round(float(z[i]), 5), z_err=round(float(z_err[i]), 5),
                  width=round(float(width_z[i]), 5), r=round(float(peaks.r[i]), 3),
                  lap=round(float(lap2[i]), 3), rlap=round(float(rlap2[i]), 3),
                  good=bool(good[i]))
            for i in rank[:opts.top]
        ]
        best_rlap = round(float(rlap2[rank[0]]), 3) if rank.size else None
        if not good.any():
            return Verdict(None, None, None, None, None, None, None, best_rlap, False,
                           matches, int(good.sum()), library_version=lib.version,
                           spectrum=name)
        likeness = np.where(good, rlap2 * np.maximum(peaks.h, 0.0) ** LIKENESS_POWER,
                            -np.inf)
        closest = np.argsort(-likeness, kind="stable")
        return _decide(lib, cand, good, rlap2, z, z_err, closest, matches, best_rlap,
                       opts, name)


@lru_cache(maxsize=4)
def _type_sizes(library: TemplateLibrary) -> dict[str, float]:
    """Return each main type's share of the library's supernovae (not epochs)."""
    family_type = dict(zip(library.family.tolist(), library.type.tolist(), strict=True))
    counts = Counter(family_type.values())
    total = sum(counts.values())
    return {t: n / total for t, n in counts.items()}


def _decide(lib: TemplateLibrary, cand: npt.NDArray[np.intp],
            good: npt.NDArray[np.bool_], rlap: F64, z: F64, z_err: F64,
            rank: npt.NDArray[np.intp], matches: list[Match], best_rlap: float | None,
            opts: ClassifyOptions, name: str) -> Verdict:
    """Turn the good matches into a type, subtype, redshift and age."""
    # the closest good matches (``rank``), one epoch per supernova, at most
    # VOTERS of them
    seen: set[str] = set()
    chosen: list[int] = []
    for i in rank:
        if not good[i]:
            continue
        sn = str(lib.family[cand[i]])
        if sn in seen:
            continue
        seen.add(sn)
        chosen.append(int(i))
        if len(chosen) == VOTERS:
            break
    # each voter's weight: 1/rank (the closest match counts most), over its
    # type's share of the library to SHARE_POWER
    sizes = _type_sizes(lib)
    vote = {int(i): 1.0 / (k + 1) / sizes[str(lib.type[cand[i]])] ** SHARE_POWER
            for k, i in enumerate(chosen)}
    types: dict[str, float] = {}
    for i in chosen:
        t = str(lib.type[cand[i]])
        types[t] = types.get(t, 0.0) + vote[i]
    best_first = {str(lib.type[cand[i]]): k
                  for k, i in reversed(list(enumerate(chosen)))}
    top_type = max(types, key=lambda t: (types[t], -best_first[t]))
    fraction = types[top_type] / sum(types.values())
    # redshift and age from the voters of that type (the best epoch of each)
    of_type = np.array([i for i in chosen if lib.type[cand[i]] == top_type])
    subtypes: dict[str, float] = {}
    for i in of_type:
        sub = str(lib.subtype[cand[i]])
        subtypes[sub] = subtypes.get(sub, 0.0) + vote[int(i)]
    top_sub = max(subtypes, key=lambda s: subtypes[s])
    weights = rlap[of_type] ** WEIGHT_POWER
    z_mean, z_spread = _weighted_stats(z[of_type], weights)
    z_err_best = float(np.median(z_err[of_type]))
    of_sub = np.array([i for i in of_type if lib.subtype[cand[i]] == top_sub])
    age, age_err = _weighted_stats(lib.phase[cand[of_sub]],
                                   rlap[of_sub] ** WEIGHT_POWER)
    z_value = opts.z if opts.z is not None else z_mean
    z_error = 0.0 if opts.z is not None else max(z_spread, z_err_best)
    return Verdict(
        type=top_type, subtype=top_sub, fraction=round(fraction, 3),
        z=round(float(z_value), 5), z_err=round(z_error, 5),
        age=round(age, 1), age_err=round(age_err, 1), rlap=best_rlap, good=True,
        matches=matches, n_good=int(good.sum()), library_version=lib.version,
        spectrum=name)
