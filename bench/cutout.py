"""Time SODA cutouts (the cutter, in-process) on EFOSC-sized and larger images.

Prints the median time of a cutout by a 30" and a 2' circle, a 2'x2' polygon and
a circle covering the whole image, for 1015x1008 (EFOSC) and 2048x2048 images
(``image 1015x1008, circle 30": 19 ms``), and of a BAND cut of a Phase 3 1D
spectrum; then the process's peak memory. ``--smoke``: the EFOSC size only, one
run each.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from soda.cutout import Coverage, cut
from soda.params import CutoutRequest
from vo_archive.vo.dali.params import Interval
from vo_archive.vo.sky import Circle, Polygon

RA, DEC, SCALE = 150.0, -30.0, 0.24 / 3600


def _image(path: Path, nx: int, ny: int) -> Path:
    h = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": RA,
                     "CRVAL2": DEC, "CRPIX1": nx / 2 + 0.5, "CRPIX2": ny / 2 + 0.5,
                     "CD1_1": -SCALE, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": SCALE})
    data = np.random.default_rng(1).normal(200, 8, (ny, nx)).astype(np.float32)
    fits.PrimaryHDU(data, header=h).writeto(path, overwrite=True)
    return path


def _spectrum(path: Path, n: int = 1015) -> Path:
    wave = 3650.0 + 5.5 * np.arange(n, dtype=np.float32)
    cols = [fits.Column(name, f"{n}E", array=[wave if name == "WAVE" else
                                              np.ones(n, np.float32)])
            for name in ("WAVE", "FLUX", "ERR")]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(
        path, overwrite=True)
    return path


def _median_ms(path: Path, req: CutoutRequest, cov: Coverage, runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        cut(path, req, cov)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="EFOSC-sized image only, one run each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cutout-") as tmp:
        run(Path(tmp), ((1015, 1008),) if args.smoke else ((1015, 1008), (2048, 2048)),
            1 if args.smoke else 7)


def run(folder: Path, sizes: tuple[tuple[int, int], ...], runs: int) -> None:
    """Print the figures, working in ``folder``."""
    image_cov = Coverage("x.fits", "imaging", "image", RA, DEC, None, None, None, None)
    d = 60 / 3600
    regions = {"circle 30\"": Circle(RA, DEC, 30 / 3600),
               "circle 2'": Circle(RA, DEC, 120 / 3600),
               "polygon 2'x2'": Polygon(((RA - d, DEC - d), (RA + d, DEC - d),
                                         (RA + d, DEC + d), (RA - d, DEC + d))),
               "circle 1 deg (whole)": Circle(RA, DEC, 1.0)}
    for nx, ny in sizes:
        path = _image(folder / f"img{nx}.fits", nx, ny)
        for name, region in regions.items():
            ms = _median_ms(path, CutoutRequest("x", region), image_cov, runs)
            print(f"image {nx}x{ny}, {name}: {ms:.0f} ms")
    spec_cov = Coverage("s.fits", "spectroscopy", "fluxcal_1d", RA, DEC, 3.65e-7,
                        9.2e-7, None, None)
    ms = _median_ms(_spectrum(folder / "spec.fits"),
                    CutoutRequest("x", band=Interval(5e-7, 7e-7)), spec_cov, runs)
    print(f"1D spectrum (1015 pixels), BAND: {ms:.0f} ms")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak:.0f} MB")


if __name__ == "__main__":
    main()
