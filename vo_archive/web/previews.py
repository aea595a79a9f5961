"""Previews: a plot of each spectrum, a thumbnail of each image (PNG).

A preview is made the first time it is asked for and kept under
``settings.cache_dir/previews``, named by the file's SHA-256 (versions never
change, so a preview never goes stale); it is written to a temporary file and
renamed, so concurrent requests never see half a PNG. Served at
``/products/<pid>/versions/<vno>/preview.png`` to callers who may see the
product (the access filter, through :func:`vo_archive.web.files.find_version`).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
from astropy.io import fits
from flask import Blueprint, Response, send_file

from vo_archive import web
from vo_archive.ingest.storage import Storage
from vo_archive.spectra import NotASpectrum, read_spectrum
from vo_archive.vo.dali.errors import FaultStyle
from vo_archive.web.files import ArchivedFile, find_version

bp = Blueprint("previews", __name__)
web.set_fault_style(bp.name, FaultStyle.TEXT)

#: Longest side of an image thumbnail, in pixels.
THUMBNAIL_SIZE = 512


def preview_path(product_id: int, version_no: int) -> str:
    """Return the archive path of a version's preview."""
    return f"/products/{product_id}/versions/{version_no}/preview.png"


def thumbnail_factor(naxis1: int | None, naxis2: int | None) -> float:
    """Return the scale of an image's thumbnail (1 for images that fit already)."""
    longest = max(naxis1 or 1, naxis2 or 1)
    return min(1.0, THUMBNAIL_SIZE / longest)


def _stretch(data: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return np.zeros_like(data)
    lo, hi = np.percentile(finite, [1.0, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    out: npt.NDArray[np.float64] = np.clip(
        (np.nan_to_num(data, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return out


#: Largest long/short side ratio of a preview: a 2D spectrum (a long, narrow
#: frame) has its short side stretched to this.
MAX_ASPECT = 4.0


def readable(img: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return a long, narrow frame (a 2D spectrum) lying down, at most 4:1.

    The dispersion of a 2D spectrum runs along its long side: that side goes
    horizontal, and the short (spatial) side is repeated until the preview is
    no flatter than :data:`MAX_ASPECT`, so that a thumbnail shows the spectrum
    rather than a one-pixel strip. Other images are returned unchanged.
    """
    h, w = img.shape
    if max(h, w) < MAX_ASPECT * min(h, w):
        return img
    if h > w:
        img = img.T  # the dispersion along x, in the same direction
        h, w = w, h
    repeat = max(1, int(np.ceil(w / MAX_ASPECT / h)))
    out: npt.NDArray[np.float64] = np.repeat(img, repeat, axis=0)
    return out


def _image_png(path: Path, out: Path) -> None:
    from matplotlib.image import imsave

    with fits.open(path, memmap=False) as hdul:
        data = next((h.data for h in hdul if getattr(h, "is_image", False)
                     and h.data is not None and h.data.ndim >= 2), None)
        if data is None:
            raise NotASpectrum("no image data")
        img = np.asarray(data, dtype=np.float64)
    while img.ndim > 2:
        img = img[0]
    f = thumbnail_factor(img.shape[1], img.shape[0])
    if f < 1.0:
        step = int(np.ceil(1.0 / f))
        h, w = (img.shape[0] // step) * step, (img.shape[1] // step) * step
        img = img[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))
    imsave(out, _stretch(readable(img)), cmap="gray", origin="lower", format="png")


def _spectrum_png(path: Path, out: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    spec = read_spectrum(path)
    fig = Figure(figsize=(8, 4), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(spec.wave, spec.flux, lw=0.8, color="k")
    if spec.error is not None:
        ax.fill_between(spec.wave, spec.flux - spec.error, spec.flux + spec.error,
                        color="0.7", lw=0)
    ax.set_xlabel("Wavelength (Å)")
    ax.set_ylabel(f"Flux ({spec.flux_unit})")
    ax.set_title(spec.title)
    fig.tight_layout()
    fig.savefig(out, format="png")


def make_preview(source: Path, target: Path) -> None:
    """Write the preview of a FITS file (a plot if it is a 1D spectrum)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".png.tmp")
    os.close(fd)
    try:
        try:
            with fits.open(source, memmap=False) as hdul:
                is_1d = any(getattr(h, "columns", None) is not None and "WAVE" in
                            h.columns.names for h in hdul[1:]) or (
                    hdul[0].data is not None and
                    (hdul[0].data.ndim == 3 or min(hdul[0].data.shape) == 1))
            if is_1d:
                _spectrum_png(source, Path(tmp))
            else:
                _image_png(source, Path(tmp))
        except NotASpectrum:
            _image_png(source, Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


#: Matplotlib is not thread-safe: a worker's threads make previews one at a time.
_MAKING = threading.Lock()


def cached_preview(f: ArchivedFile) -> Path:
    """Return the cached preview of an archived file, making it if needed."""
    settings = web.settings()
    target = settings.cache_dir / "previews" / f.sha256[:2] / f"{f.sha256}.png"
    if not target.exists():
        with _MAKING:
            if not target.exists():  # made by another thread while this one waited
                make_preview(Storage(settings.storage_dir).path_of(f.storage_key),
                             target)
    return target


@bp.get("/products/<int:product_id>/versions/<int:version_no>/preview.png")
def preview(product_id: int, version_no: int) -> Response:
    """Serve a version's preview (PNG)."""
    f = find_version(product_id, version_no)
    return send_file(cached_preview(f), mimetype="image/png", conditional=True,
                     etag=f"preview-{f.sha256}", max_age=86400)
