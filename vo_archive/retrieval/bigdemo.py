"""Large synthetic runs for download benchmarks and streaming tests.

The demo generator keeps files small; here its EFOSC2 reduced images are
written again with a bigger pixel array (the demo image tiled, plus a marker so
that every file has its own content and checksum) until the set reaches the size
asked for. The files keep the demo's names and headers, so the normal ingest
classifies them.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

from vo_archive.demo import DemoPlan, FileSpec, write_spec

#: Bytes per pixel of the demo images (float32).
PIXEL = 4


def generate_large(out_dir: Path, total_bytes: int, file_bytes: int = 16 << 20,
                   seed: int = 7) -> list[Path]:
    """Write science images of about ``file_bytes`` each, ``total_bytes`` in all.

    Returns
    -------
    list of Path
        The files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    side = int(math.sqrt(file_bytes / PIXEL))
    count = max(1, -(-total_bytes // (side * side * PIXEL)))
    images: list[FileSpec] = []
    n = 400
    while len(images) < count:
        images = [s for s in DemoPlan(n, seed).build() if s.kind == "image"
                  and not s.name.startswith("acq_")]
        n *= 2
    paths = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, spec in enumerate(images[:count]):
            small = Path(write_spec(spec, tmp))
            with fits.open(small) as hdul:
                header = hdul[0].header.copy()
                data = np.resize(hdul[0].data, (side, side))
            data[0, 0] = float(i)
            path = out_dir / small.name
            fits.PrimaryHDU(data, header).writeto(path, overwrite=True, checksum=True)
            paths.append(path)
    return paths
